//! Any bytes as a TSIG-signed message: finding the TSIG record and checking
//! a request's or a response's MAC never panics. Then the bytes are signed
//! with a known key: when the TSIG can be found again, the MAC verifies,
//! and any change to a signed octet makes it fail.

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
    Signer::request(key()).sign(&mut signed, NOW, 0, &[]);
    let Ok(Some(record)) = tsig::find(&signed) else { return };
    if record.key_name != key().name {
        // The input's own TSIG came last in the sections it claims to have.
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
