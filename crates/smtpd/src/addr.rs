//! Addresses in MAIL and RCPT, as qmail-smtpd reads them: the text between `<` and `>`
//! (or after the colon, for clients that never read RFC 821), source route stripped,
//! quotes and backslashes removed; more than 900 bytes is a syntax error. ESMTP
//! parameters follow the `>`.

/// The address and the `NAME=value` parameters after it.
#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub addr: Vec<u8>,
    pub params: Vec<(Vec<u8>, Vec<u8>)>,
}

pub const MAX: usize = 900;

pub fn parse(arg: &[u8]) -> Option<Parsed> {
    let (mut rest, terminator) = match arg.iter().position(|&b| b == b'<') {
        Some(i) => (&arg[i + 1..], b'>'),
        None => {
            let i = arg.iter().position(|&b| b == b':').map_or(0, |i| i + 1);
            let mut r = &arg[i..];
            while r.first() == Some(&b' ') {
                r = &r[1..];
            }
            (r, b' ')
        }
    };
    if rest.first() == Some(&b'@') {
        rest = rest.iter().position(|&b| b == b':').map_or(&[][..], |i| &rest[i + 1..]);
    }
    let mut addr = Vec::new();
    let (mut escaped, mut quoted) = (false, false);
    let mut end = rest.len();
    for (i, &ch) in rest.iter().enumerate() {
        if escaped {
            addr.push(ch);
            escaped = false;
        } else if !quoted && ch == terminator {
            end = i + 1;
            break;
        } else {
            match ch {
                b'\\' => escaped = true,
                b'"' => quoted = !quoted,
                _ => addr.push(ch),
            }
        }
    }
    if addr.len() > MAX {
        return None;
    }
    let params = rest[end.min(rest.len())..]
        .split(|&b| b == b' ')
        .filter(|p| !p.is_empty())
        .map(|p| match p.iter().position(|&b| b == b'=') {
            Some(i) => (p[..i].to_ascii_uppercase(), p[i + 1..].to_vec()),
            None => (p.to_ascii_uppercase(), Vec::new()),
        })
        .collect();
    Some(Parsed { addr, params })
}

/// The domain of an address, lower-cased (empty when there is no `@`).
pub fn domain(addr: &[u8]) -> Vec<u8> {
    addr.iter()
        .rposition(|&b| b == b'@')
        .map_or(Vec::new(), |i| addr[i + 1..].to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> String {
        String::from_utf8(parse(s.as_bytes()).unwrap().addr).unwrap()
    }

    #[test]
    fn qmail_forms() {
        assert_eq!(a("FROM:<a@b.c>"), "a@b.c");
        assert_eq!(a("FROM: <a@b.c> SIZE=10"), "a@b.c");
        assert_eq!(a("FROM:<>"), "");
        assert_eq!(a("TO:<@r1,@r2:u@h>"), "u@h");
        assert_eq!(a("TO:<\"a b\"@h>"), "a b@h");
        assert_eq!(a("TO:<a\\>b@h>"), "a>b@h");
        assert_eq!(a("TO: u@h"), "u@h");
        assert_eq!(a("TO:u@h junk"), "u@h");
        let long = format!("TO:<{}@h>", "x".repeat(899));
        assert!(parse(long.as_bytes()).is_none());
    }

    #[test]
    fn params() {
        let p = parse(b"FROM:<a@b> size=1000 BODY=8BITMIME AUTH=<>").unwrap();
        assert_eq!(
            p.params,
            vec![
                (b"SIZE".to_vec(), b"1000".to_vec()),
                (b"BODY".to_vec(), b"8BITMIME".to_vec()),
                (b"AUTH".to_vec(), b"<>".to_vec())
            ]
        );
        assert_eq!(domain(b"u@Example.COM"), b"example.com");
        assert_eq!(domain(b"postmaster"), b"");
    }
}
