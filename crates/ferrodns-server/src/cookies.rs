//! DNS Cookies (RFC 7873), with the interoperable server cookie of RFC 9018.
//!
//! A client that sends a COOKIE option gets one back: its own client cookie
//! and a server cookie made from it, the client's address, the time and a
//! secret. A client that returns a server cookie we made proves it can see
//! our answers at the address it claims, so the rate limiter lets it through
//! ([`crate::rrl`]), as Knot and Unbound do.
//!
//! The server cookie is RFC 9018's version 1: a version octet, three reserved
//! octets, a 32-bit timestamp and SipHash-2-4 of the client cookie, those
//! eight octets and the client address, keyed with a 16-octet secret. Nodes
//! given the same secret (`--cookie-secret`) accept each other's cookies, as
//! anycast needs, and so do BIND, Knot and PowerDNS given that secret. A
//! cookie is good for an hour after its timestamp (and five minutes before
//! it, for clocks that disagree); one more than half an hour old is renewed.
//! A previous secret may be kept for the change-over, so that cookies made
//! with it stay good until they age out.
//!
//! Nothing here allocates: the option to send is written into a fixed
//! buffer the transport owns.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use ferrodns_proto::message::option_code;
use ferrodns_proto::network::canonical;
use siphasher::sip::SipHasher24;

/// Octets of a client cookie.
pub const CLIENT_COOKIE_LEN: usize = 8;
/// Octets of the server cookies we make.
pub const SERVER_COOKIE_LEN: usize = 16;
/// A COOKIE option as we send it: code, length, client and server cookie.
pub const OPTION_LEN: usize = 4 + CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN;

/// How long a server cookie is good for after its timestamp (RFC 9018 §4.3).
const LIFETIME_SECS: u32 = 3600;
/// How far in the future a timestamp may be (RFC 9018 §4.3).
const SKEW_SECS: u32 = 300;
/// A cookie older than this is replaced by a fresh one (RFC 9018 §4.3).
const RENEW_AFTER_SECS: u32 = 1800;

/// What the query's COOKIE option said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Only a client cookie, or a server cookie we did not make or that
    /// has expired: the client is unproven.
    Unproven,
    /// A server cookie we made for this client cookie and address, still
    /// within its lifetime.
    Valid,
}

/// The server secrets.
#[derive(Clone)]
pub struct CookieSecrets {
    current: [u8; 16],
    previous: Option<[u8; 16]>,
}

impl std::fmt::Debug for CookieSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is a key: never printed.
        f.write_str("CookieSecrets(..)")
    }
}

impl CookieSecrets {
    /// Cookies made with `current`, and accepted when made with `previous`.
    pub fn new(current: [u8; 16], previous: Option<[u8; 16]>) -> CookieSecrets {
        CookieSecrets { current, previous }
    }

    /// A random secret, for a node that was given none: its cookies are its
    /// own and last until it restarts.
    pub fn random() -> std::io::Result<CookieSecrets> {
        let mut secret = [0u8; 16];
        getrandom::fill(&mut secret).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(CookieSecrets::new(secret, None))
    }

    /// Reads a secret written as 32 hexadecimal digits.
    pub fn parse_hex(text: &str) -> Result<[u8; 16], String> {
        let text = text.trim();
        if text.len() != 32 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("a cookie secret is 32 hexadecimal digits (16 octets)".into());
        }
        let mut secret = [0u8; 16];
        for (i, octet) in secret.iter_mut().enumerate() {
            *octet = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
        }
        Ok(secret)
    }

    /// Reads the query's COOKIE option data (`cookie`, 8 or 16 to 40
    /// octets, as the parser checked) from `client` at `now` (seconds since
    /// the epoch, modulo 2^32), and writes the option to send back into
    /// `reply`. Returns whether the client proved itself.
    pub fn answer(&self, cookie: &[u8], client: IpAddr, now: u32, reply: &mut [u8; OPTION_LEN]) -> Verdict {
        let client_cookie: &[u8; CLIENT_COOKIE_LEN] = cookie[..CLIENT_COOKIE_LEN].try_into().expect("8 octets");
        let server = &cookie[CLIENT_COOKIE_LEN..];
        reply[0..2].copy_from_slice(&option_code::COOKIE.to_be_bytes());
        reply[2..4].copy_from_slice(&((CLIENT_COOKIE_LEN + SERVER_COOKIE_LEN) as u16).to_be_bytes());
        reply[4..12].copy_from_slice(client_cookie);
        let made_with = self.check(client_cookie, server, client, now);
        if made_with == Some(Secret::Current) {
            let stamp = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
            if now.wrapping_sub(stamp) as i32 <= RENEW_AFTER_SECS as i32 {
                // Still fresh: send the client's own back (RFC 9018 §4.3).
                reply[12..].copy_from_slice(server);
                return Verdict::Valid;
            }
        }
        let made = server_cookie(&self.current, client_cookie, client, now);
        reply[12..].copy_from_slice(&made);
        if made_with.is_some() {
            Verdict::Valid
        } else {
            Verdict::Unproven
        }
    }

    /// Which of our secrets made `server` for this client cookie and
    /// address, if one did and the cookie is within its lifetime.
    fn check(
        &self,
        client_cookie: &[u8; CLIENT_COOKIE_LEN],
        server: &[u8],
        client: IpAddr,
        now: u32,
    ) -> Option<Secret> {
        if server.len() != SERVER_COOKIE_LEN || server[0] != 1 {
            return None;
        }
        let stamp = u32::from_be_bytes([server[4], server[5], server[6], server[7]]);
        // The age modulo 2^32 (RFC 1982 style): a timestamp just before a
        // wrap and a clock just after it are seconds apart, not years.
        let age = now.wrapping_sub(stamp) as i32;
        if age > LIFETIME_SECS as i32 || age < -(SKEW_SECS as i32) {
            return None;
        }
        let header: &[u8; 8] = server[..8].try_into().expect("8 octets");
        let made_by = |secret: &[u8; 16]| hash(secret, client_cookie, header, client) == server[8..16];
        if made_by(&self.current) {
            Some(Secret::Current)
        } else if self.previous.as_ref().is_some_and(made_by) {
            Some(Secret::Previous)
        } else {
            None
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Secret {
    Current,
    Previous,
}

/// RFC 9018 §4.2: version 1, reserved zero, the timestamp, then the hash.
fn server_cookie(
    secret: &[u8; 16],
    client_cookie: &[u8; CLIENT_COOKIE_LEN],
    client: IpAddr,
    now: u32,
) -> [u8; SERVER_COOKIE_LEN] {
    let mut cookie = [0u8; SERVER_COOKIE_LEN];
    cookie[0] = 1;
    cookie[4..8].copy_from_slice(&now.to_be_bytes());
    let header: [u8; 8] = cookie[..8].try_into().expect("8 octets");
    cookie[8..].copy_from_slice(&hash(secret, client_cookie, &header, client));
    cookie
}

/// SipHash-2-4 over client cookie | version | reserved | timestamp | client
/// address, keyed with the secret; its 64 bits in little-endian order, as
/// RFC 9018's examples have them.
fn hash(secret: &[u8; 16], client_cookie: &[u8; CLIENT_COOKIE_LEN], header: &[u8; 8], client: IpAddr) -> [u8; 8] {
    // One contiguous input, hashed in one call: the hasher's streaming
    // interface costs more than the rounds on an input this short.
    let mut input = [0u8; CLIENT_COOKIE_LEN + 8 + 16];
    input[..8].copy_from_slice(client_cookie);
    input[8..16].copy_from_slice(header);
    let len = match canonical(client) {
        IpAddr::V4(v4) => {
            input[16..20].copy_from_slice(&v4.octets());
            20
        }
        IpAddr::V6(v6) => {
            input[16..32].copy_from_slice(&v6.octets());
            32
        }
    };
    SipHasher24::new_with_key(secret).hash(&input[..len]).to_le_bytes()
}

/// Seconds since the epoch, modulo 2^32, as cookie timestamps count.
pub fn unix_now() -> u32 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
    }

    fn secret(text: &str) -> [u8; 16] {
        CookieSecrets::parse_hex(text).unwrap()
    }

    fn reply(secrets: &CookieSecrets, cookie: &str, client: &str, now: u32) -> (Verdict, String) {
        let mut out = [0u8; OPTION_LEN];
        let verdict = secrets.answer(&hex(cookie), client.parse().unwrap(), now, &mut out);
        assert_eq!(out[..4], [0, 10, 0, 24]);
        (verdict, out[4..].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// RFC 9018 Appendix A.1: a client with no server cookie gets one.
    #[test]
    fn a_new_client_learns_a_server_cookie() {
        let secrets = CookieSecrets::new(secret("e5e973e5a6b2a43f48e7dc849e37bfcf"), None);
        let (verdict, sent) = reply(&secrets, "2464c4abcf10c957", "198.51.100.100", 1559731985);
        assert_eq!(verdict, Verdict::Unproven);
        assert_eq!(sent, "2464c4abcf10c957010000005cf79f111f8130c3eee29480");
    }

    /// A.2: the same cookie 40 minutes later is good, and renewed.
    #[test]
    fn an_older_cookie_is_valid_and_renewed() {
        let secrets = CookieSecrets::new(secret("e5e973e5a6b2a43f48e7dc849e37bfcf"), None);
        let (verdict, sent) =
            reply(&secrets, "2464c4abcf10c957010000005cf79f111f8130c3eee29480", "198.51.100.100", 1559734385);
        assert_eq!(verdict, Verdict::Valid);
        assert_eq!(sent, "2464c4abcf10c957010000005cf7a871d4a564a1442aca77");
    }

    /// A.3: another client comes back with a cookie made 1 h 52 min ago,
    /// past the hour we keep them: it gets a fresh one. Within the hour the
    /// same cookie verifies, reserved octets and all, from its address only.
    #[test]
    fn a_cookie_with_reserved_octets_set_verifies_as_sent() {
        let secrets = CookieSecrets::new(secret("e5e973e5a6b2a43f48e7dc849e37bfcf"), None);
        let cookie = "fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5";
        let (verdict, sent) = reply(&secrets, cookie, "203.0.113.203", 1559734700);
        assert_eq!(verdict, Verdict::Unproven, "expired");
        assert_eq!(sent, "fc93fc62807ddb86010000005cf7a9acf73a7810aca2381e");
        let made = 0x5cf78f71;
        assert_eq!(reply(&secrets, cookie, "203.0.113.203", made + 60).0, Verdict::Valid);
        let (elsewhere, _) = reply(&secrets, cookie, "203.0.113.204", made + 60);
        assert_eq!(elsewhere, Verdict::Unproven, "the same cookie from another address");
    }

    /// A.4: after a change of secret, a cookie made with the previous one is
    /// still good, and the reply carries one made with the new.
    #[test]
    fn the_previous_secret_still_verifies() {
        let cookie = "22681ab97d52c298010000005cf7c57926556bd0934c72f8";
        let client = "2001:db8:220:1:59de:d0f4:8769:82b8";
        let old = secret("dd3bdf9344b678b185a6f5cb60fca715");
        let new = secret("445536bcd2513298075a5d379663c962");
        let (verdict, sent) = reply(&CookieSecrets::new(new, Some(old)), cookie, client, 1559741961);
        assert_eq!(verdict, Verdict::Valid);
        assert_eq!(sent, "22681ab97d52c298010000005cf7c609a6bb79d16625507a");
        let (without, _) = reply(&CookieSecrets::new(new, None), cookie, client, 1559741961);
        assert_eq!(without, Verdict::Unproven);
    }

    #[test]
    fn cookies_expire_and_may_not_come_from_the_future() {
        let secrets = CookieSecrets::new(secret("e5e973e5a6b2a43f48e7dc849e37bfcf"), None);
        let cookie = "2464c4abcf10c957010000005cf79f111f8130c3eee29480";
        let made = 1559731985u32;
        for (now, want) in [
            (made + 3600, Verdict::Valid),
            (made + 3601, Verdict::Unproven),
            (made - 300, Verdict::Valid),
            (made - 301, Verdict::Unproven),
        ] {
            assert_eq!(reply(&secrets, cookie, "198.51.100.100", now).0, want, "at {now}");
        }
    }

    #[test]
    fn a_fresh_cookie_is_sent_back_unchanged() {
        let secrets = CookieSecrets::new(secret("e5e973e5a6b2a43f48e7dc849e37bfcf"), None);
        let cookie = "2464c4abcf10c957010000005cf79f111f8130c3eee29480";
        let (verdict, sent) = reply(&secrets, cookie, "198.51.100.100", 1559731985 + 60);
        assert_eq!(verdict, Verdict::Valid);
        assert_eq!(sent, cookie);
    }

    #[test]
    fn secrets_are_32_hex_digits() {
        assert!(CookieSecrets::parse_hex("e5e973e5a6b2a43f48e7dc849e37bfc").is_err());
        assert!(CookieSecrets::parse_hex("x5e973e5a6b2a43f48e7dc849e37bfcf").is_err());
        assert_eq!(format!("{:?}", CookieSecrets::random().unwrap()), "CookieSecrets(..)");
    }
}
