//! What the server says about itself when asked: its NSID (RFC 5001) and
//! the CH-class TXT names that Knot, NSD and BIND answer (`id.server` and
//! `hostname.bind` for the identity, `version.bind` and `version.server`
//! for the version).
//!
//! An operator behind anycast or a load balancer uses these to learn which
//! node answered. All of it is off unless configured, but for the identity,
//! which defaults to the node id; the version is never told unless set, so
//! that nothing about the build leaks by default.

use ferrodns_proto::message::option_code;

/// Longest NSID payload taken, in octets. RFC 5001 sets no limit; this keeps
/// an answer's OPT record small.
pub const MAX_NSID_LEN: usize = 128;

/// Longest identity or version string: one TXT character-string.
pub const MAX_TEXT_LEN: usize = 255;

/// The server's NSID, identity and version, prepared for the answer path:
/// the NSID framed as an EDNS option, the two strings as TXT RDATA.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerIdentity {
    nsid_option: Option<Box<[u8]>>,
    identity_txt: Option<Box<[u8]>>,
    version_txt: Option<Box<[u8]>>,
}

/// A server that says nothing about itself: no NSID, CH queries refused.
pub static ANONYMOUS: ServerIdentity = ServerIdentity { nsid_option: None, identity_txt: None, version_txt: None };

impl ServerIdentity {
    /// `nsid` is the NSID payload (none: off); `identity` the answer to
    /// `id.server` and `hostname.bind`, and `version` to `version.bind` and
    /// `version.server` (none or empty: refused).
    pub fn new(nsid: Option<&[u8]>, identity: Option<&str>, version: Option<&str>) -> Result<ServerIdentity, String> {
        let nsid_option = match nsid {
            None => None,
            Some([]) => return Err("the NSID is empty".into()),
            Some(payload) if payload.len() > MAX_NSID_LEN => {
                return Err(format!("the NSID is {} octets; at most {MAX_NSID_LEN}", payload.len()))
            }
            Some(payload) => {
                let mut option = Vec::with_capacity(4 + payload.len());
                option.extend_from_slice(&option_code::NSID.to_be_bytes());
                option.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                option.extend_from_slice(payload);
                Some(option.into_boxed_slice())
            }
        };
        Ok(ServerIdentity {
            nsid_option,
            identity_txt: txt("identity", identity)?,
            version_txt: txt("version string", version)?,
        })
    }

    /// The NSID option (code, length, payload), when on.
    pub fn nsid_option(&self) -> Option<&[u8]> {
        self.nsid_option.as_deref()
    }

    /// The TXT RDATA for a CH-class query of `qname_lower`, if it is one of
    /// the names this server answers: `Ok` with the RDATA, `Err(true)` for a
    /// version that is not told (a policy refusal), `Err(false)` for any
    /// other name.
    pub(crate) fn chaos_txt(&self, qname_lower: &[u8]) -> Result<&[u8], bool> {
        match qname_lower {
            b"\x02id\x06server\x00" | b"\x08hostname\x04bind\x00" => self.identity_txt.as_deref().ok_or(false),
            b"\x07version\x04bind\x00" | b"\x07version\x06server\x00" => self.version_txt.as_deref().ok_or(true),
            _ => Err(false),
        }
    }
}

/// One TXT character-string holding `text`, or none for none or empty.
fn txt(what: &str, text: Option<&str>) -> Result<Option<Box<[u8]>>, String> {
    let Some(text) = text.filter(|t| !t.is_empty()) else { return Ok(None) };
    if text.len() > MAX_TEXT_LEN {
        return Err(format!("the {what} is {} octets; at most {MAX_TEXT_LEN}", text.len()));
    }
    if text.chars().any(|c| c.is_control()) {
        return Err(format!("the {what} holds a control character"));
    }
    let mut rdata = Vec::with_capacity(1 + text.len());
    rdata.push(text.len() as u8);
    rdata.extend_from_slice(text.as_bytes());
    Ok(Some(rdata.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_what_it_is_given_and_refuses_what_does_not_fit() {
        let server = ServerIdentity::new(Some(b"ns-7"), Some("node-7"), None).unwrap();
        assert_eq!(server.nsid_option(), Some(&b"\x00\x03\x00\x04ns-7"[..]));
        assert_eq!(server.chaos_txt(b"\x02id\x06server\x00"), Ok(&b"\x06node-7"[..]));
        assert_eq!(server.chaos_txt(b"\x08hostname\x04bind\x00"), Ok(&b"\x06node-7"[..]));
        assert_eq!(server.chaos_txt(b"\x07version\x04bind\x00"), Err(true));
        assert_eq!(server.chaos_txt(b"\x07authors\x04bind\x00"), Err(false));
        assert_eq!(ANONYMOUS.chaos_txt(b"\x02id\x06server\x00"), Err(false));
        assert!(ServerIdentity::new(Some(b""), None, None).is_err());
        assert!(ServerIdentity::new(Some(&[1; MAX_NSID_LEN + 1]), None, None).is_err());
        assert!(ServerIdentity::new(None, Some(&"x".repeat(256)), None).is_err());
        assert!(ServerIdentity::new(None, None, Some("a\nb")).is_err());
        assert_eq!(ServerIdentity::new(None, Some(""), Some("")).unwrap(), ANONYMOUS);
    }
}
