//! Any bytes as a TSIG-signed message: finding the TSIG record and checking
//! a request's or a response's MAC never panics. Then the bytes are signed
//! with a known key: when the TSIG is found again where it was appended, the
//! MAC verifies, and any change to a signed octet makes it fail.

use ferrodns_proto::tsig::{self, Key, ResponseVerifier, Signer};

const NOW: u64 = 1_800_000_000;

fn key() -> Key {
    Key::parse("fuzz-key:hmac-sha256:ZnV6ei1rZXktc2VjcmV0LWZvci10aGUtdGFyZ2V0cw==").unwrap()
}

pub fn check(data: &[u8]) {
    let _ = tsig::find(data);
    let _ = tsig::verify_request(data, |_| Some(key()), NOW);
    let mut verifier = ResponseVerifier::new(key(), vec![0; 32]);
    let _ = verifier.verify(data, NOW);

    if data.len() < 12 || data.len() > 60_000 {
        return;
    }
    let mut signed = data.to_vec();
    let mut signer = Signer::request(key());
    signer.sign(&mut signed, NOW, 0, &[]);
    let Ok(Some(record)) = tsig::find(&signed) else { return };
    // The record found must be the one just appended, where it was put: an
    // input with octets after the records its counts claim makes the last
    // record start in those octets instead, and such a message is rightly
    // not verified.
    if record.offset != data.len() || Some(record.mac.as_slice()) != signer.last_mac() {
        return;
    }
    match tsig::verify_request(&signed, |_| Some(key()), NOW) {
        Ok(Some(_)) => {}
        other => panic!("a message signed just now does not verify: {:?}", other.map(|v| v.is_some())),
    }
    // Any octet of the signed part but the id (the TSIG keeps the original).
    let at = 2 + data.len() % (data.len() - 2);
    signed[at] ^= 0x01;
    assert!(
        !matches!(tsig::verify_request(&signed, |_| Some(key()), NOW), Ok(Some(_))),
        "a message changed after signing still verifies"
    );
}
