//! Challenge-response logins with a user's clear secret (stored only for users whose
//! admin opted in): CRAM-MD5 (RFC 2195) and POP3's APOP (RFC 1939).
//!
//! Two caller families put the CRAM-MD5 fields in opposite orders on fd 3: brush's
//! qmail-smtpd-auth patch and cmd5checkpw 0.22 `login\0challenge\0response\0`,
//! Hoffmann's qmail-authentication, cmd5checkpw 0.30 and vchkpw 5.4
//! `login\0response\0challenge\0`. The order is recognised by shape, a `<...@...>` message-id
//! and 32 lower-case hex digits, so both work. APOP's digest is in the password field
//! and qmail-popup's timestamp in the third, the same shape as Hoffmann's CRAM-MD5, so
//! both are tried there.
//!
//! Fields of that shape are only ever checked as a challenge response, never as a
//! password ([`shaped`]): CRAM-MD5 must not become cleartext AUTH in disguise. The
//! price: a password that is itself 32 lower-case hex digits, given with qmail-popup's
//! `<...@...>` timestamp in the third field, is taken for a digest and fails.

use hmac::{KeyInit, Mac};
use md5::{Digest, Md5};

type HmacMd5 = hmac::Hmac<Md5>;

/// Constant-time equality (the length is not secret).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn is_msgid(f: &[u8]) -> bool {
    f.len() > 2 && f[0] == b'<' && f[f.len() - 1] == b'>' && f.contains(&b'@')
}

fn is_digest(f: &[u8]) -> bool {
    f.len() == 32 && f.iter().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
}

fn hex(bytes: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
        .collect()
}

/// HMAC-MD5 keyed with the secret over the challenge, in hex.
pub fn cram_md5(secret: &[u8], challenge: &[u8]) -> Vec<u8> {
    let mut mac = <HmacMd5 as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(challenge);
    hex(&mac.finalize().into_bytes())
}

/// MD5 of the timestamp followed by the secret, in hex.
pub fn apop(secret: &[u8], timestamp: &[u8]) -> Vec<u8> {
    let mut h = Md5::new();
    h.update(timestamp);
    h.update(secret);
    hex(&h.finalize())
}

/// True when `second`/`third` (the fields after the login) have the shape of a
/// challenge response in either order: a `<...@...>` challenge and a 32-hex digest.
pub fn shaped(second: &[u8], third: &[u8]) -> bool {
    (is_digest(second) && is_msgid(third)) || (is_msgid(second) && is_digest(third))
}

/// True when `second`/`third` (the fields after the login) prove knowledge of `secret`.
pub fn proves(secret: &[u8], second: &[u8], third: &[u8]) -> bool {
    if is_digest(second) && is_msgid(third) {
        // Evaluate both so the time does not say which one matched.
        let cram = same(&cram_md5(secret, third), second);
        let apop = same(&apop(secret, third), second);
        return cram | apop;
    }
    if is_msgid(second) && is_digest(third) {
        return same(&cram_md5(secret, second), third);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHALLENGE: &[u8] = b"<1896.697170952@postoffice.reston.mci.net>";

    #[test]
    fn rfc2195_vector_in_both_orders() {
        let digest = b"b913a602c7eda7a495b4e6e7334d3890";
        assert_eq!(cram_md5(b"tanstaaftanstaaf", CHALLENGE), digest);
        assert!(proves(b"tanstaaftanstaaf", digest, CHALLENGE));
        assert!(proves(b"tanstaaftanstaaf", CHALLENGE, digest));
        assert!(!proves(b"tanstaaftanstaa", CHALLENGE, digest));
        assert!(!proves(
            b"tanstaaftanstaaf",
            b"B913A602C7EDA7A495B4E6E7334D3890",
            CHALLENGE
        ));
        assert!(!proves(b"tanstaaftanstaaf", digest, b"1896.697170952@postoffice"));
    }

    #[test]
    fn rfc1939_apop_vector() {
        let ts = b"<1896.697170952@dbc.mtview.ca.us>";
        assert_eq!(apop(b"tanstaaf", ts), b"c4c9334bac560ecc979e58001b3e22fb");
        assert!(proves(b"tanstaaf", b"c4c9334bac560ecc979e58001b3e22fb", ts));
        assert!(!proves(b"tanstaaf", b"c4c9334bac560ecc979e58001b3e22fc", ts));
    }

    #[test]
    fn shapes() {
        let digest = b"b913a602c7eda7a495b4e6e7334d3890";
        assert!(shaped(digest, CHALLENGE) && shaped(CHALLENGE, digest));
        assert!(!shaped(b"password", CHALLENGE));
        assert!(!shaped(digest, b""));
        assert!(!shaped(b"B913A602C7EDA7A495B4E6E7334D3890", CHALLENGE));
        assert!(!shaped(CHALLENGE, b"password"));
    }

    #[test]
    fn equality() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
