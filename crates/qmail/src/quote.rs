//! qmail's quote.c: an address in a header line (Return-Path, a bounce's To:) with
//! its local part in double quotes when RFC 822 needs them, and `\\` before CR, LF,
//! `"` and `\\` inside them. qmail-local's Return-Path/Delivered-To and qmail-send's
//! bounces use it.

/// qmail's quote_need: may this local part stand unquoted (atoms and single dots)?
fn quote_need(s: &[u8]) -> bool {
    const SPECIAL: &[u8] = b" \"(),:;<>@[\\]";
    if s.is_empty() {
        return true;
    }
    if s.iter().any(|&b| !(33..127).contains(&b) || SPECIAL.contains(&b)) {
        return true;
    }
    s[0] == b'.' || s[s.len() - 1] == b'.' || s.windows(2).any(|w| w == b"..")
}

/// qmail's quote: a local part, quoted when it needs to be.
pub fn quote(s: &[u8]) -> Vec<u8> {
    if !quote_need(s) {
        return s.to_vec();
    }
    let mut out = vec![b'"'];
    for &b in s {
        if matches!(b, b'\r' | b'\n' | b'"' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

/// qmail's quote2: an address with its local part (before the last `@`) quoted as
/// needed; the empty address stays empty.
pub fn quote2(s: &[u8]) -> Vec<u8> {
    if s.is_empty() {
        return Vec::new();
    }
    match s.iter().rposition(|&b| b == b'@') {
        None => quote(s),
        Some(j) => {
            let mut out = quote(&s[..j]);
            out.extend_from_slice(&s[j..]);
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_qmail() {
        assert_eq!(quote2(b"owner-@x-@[]"), b"\"owner-@x-\"@[]");
        assert_eq!(quote2(b"a.b@c"), b"a.b@c");
        assert_eq!(quote2(b"a..b@c"), b"\"a..b\"@c");
        assert_eq!(quote2(b".a@c"), b"\".a\"@c");
        assert_eq!(quote2(b"noat"), b"noat");
        assert_eq!(quote2(b"@c"), b"\"\"@c");
        assert_eq!(quote2(b"a\"\\\xff@c"), b"\"a\\\"\\\\\xff\"@c");
        assert_eq!(quote2(b"#@[]"), b"#@[]");
        assert_eq!(quote2(b""), b"");
        assert_eq!(quote(b"a b\nc"), b"\"a b\\\nc\"");
    }
}
