//! One line of a ucspi-tcp rules file, parsed as 0.88's tcprules parses it, into the
//! CDB records it stands for.
//!
//! `ADDRESS:allow|deny[,VAR=QvalueQ]...` where Q is any byte. 0.88's quirks are kept
//! (comments, lines without a colon ignored, spaces inside the address kept, CR not
//! stripped, first line of duplicate keys wins) so a rules file compiles to the same
//! bytes as Debian's tcprules. Beyond 0.88: the address may be a CIDR block, expanded
//! into the prefix keys every tcpserver understands; `::1:allow` finds its separator
//! as the IPv6 patch does; variable names must be valid environment names.
//!
//! A block whose length is not a multiple of the key's unit (`10.0.0.0/25`) becomes
//! keys of a finer unit (exact addresses) that a more specific line may also have
//! (`10.0.0.13:deny`); [`Keys::Block`] carries the length, so that tcprules can put
//! the more specific record first.

use crate::cidr;

/// The keys a line's address stands for: usually the address itself, borrowed; a
/// range or CIDR block is expanded. (No allocation for an ordinary line matters when
/// compiling a million lines.)
#[derive(Debug, PartialEq, Eq)]
pub enum Keys<'a> {
    One(&'a [u8]),
    Many(Vec<Vec<u8>>),
    /// A CIDR block of prefix length `len`.
    Block {
        keys: Vec<Vec<u8>>,
        len: u32,
    },
}

impl Keys<'_> {
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        let (one, many) = match self {
            Keys::One(k) => (Some(*k), &[][..]),
            Keys::Many(v) | Keys::Block { keys: v, .. } => (None, v.as_slice()),
        };
        one.into_iter().chain(many.iter().map(Vec::as_slice))
    }
}

/// Why a line was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

fn err<T>(why: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError(why.into()))
}

/// The line as tcprules echoes it in an error: trailing spaces, tabs and LF removed.
pub fn trimmed(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|&b| !matches!(b, b' ' | b'\t' | b'\n'))
        .map_or(0, |i| i + 1);
    &line[..end]
}

/// The records `line` adds: each of the keys with the data left in `data`. None for
/// comments and lines without a colon.
pub fn parse_line<'a>(line: &'a [u8], data: &mut Vec<u8>) -> Result<Keys<'a>, ParseError> {
    data.clear();
    if line.first() == Some(&b'#') {
        return Ok(Keys::Many(Vec::new()));
    }
    let line = trimmed(line);
    if line.contains(&0) {
        // A NUL would end the record item early and smuggle in another variable.
        return err("NUL byte in line");
    }
    let Some(colon) = separator(line) else {
        return Ok(Keys::Many(Vec::new()));
    };
    let (address, rest) = (&line[..colon], &line[colon + 1..]);
    let mut rest = if let Some(r) = rest.strip_prefix(b"deny") {
        data.extend_from_slice(b"D\0");
        r
    } else if let Some(r) = rest.strip_prefix(b"allow") {
        r
    } else {
        return err("expected allow or deny after the colon");
    };
    while !rest.is_empty() {
        let Some(r) = rest.strip_prefix(b",") else {
            return err(if rest.ends_with(b"\r") {
                "carriage return at end of line (DOS line endings?)"
            } else {
                "expected a comma before the next variable"
            });
        };
        let Some(eq) = r.iter().position(|&b| b == b'=') else {
            return err("expected VAR=\"value\"");
        };
        let name = &r[..eq];
        if !valid_env_name(name) {
            return err(format!("bad variable name '{}'", String::from_utf8_lossy(name)));
        }
        let Some(&quote) = r.get(eq + 1) else {
            return err("nothing after '='; write VAR=\"\" for an empty value");
        };
        let value_start = eq + 2;
        let Some(len) = r[value_start..].iter().position(|&b| b == quote) else {
            return err(format!("no closing {}", quote as char));
        };
        data.push(b'+');
        data.extend_from_slice(name);
        data.push(b'=');
        data.extend_from_slice(&r[value_start..value_start + len]);
        data.push(0);
        rest = &r[value_start + len + 1..];
    }
    keys(address)
}

/// The colon between address and instruction: the first one followed by `allow` or
/// `deny` (so IPv6 addresses can be written plainly), else the first one.
fn separator(line: &[u8]) -> Option<usize> {
    let mut first = None;
    for (i, _) in line.iter().enumerate().filter(|(_, &b)| b == b':') {
        first.get_or_insert(i);
        let after = &line[i + 1..];
        if after.starts_with(b"allow") || after.starts_with(b"deny") {
            return Some(i);
        }
    }
    first
}

fn valid_env_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        None => false,
    }
}

/// The keys an address stands for: CIDR blocks and `a-b` ranges expanded, anything
/// with `=` or `@` taken literally.
fn keys(address: &[u8]) -> Result<Keys<'_>, ParseError> {
    if address.contains(&b'=') || address.contains(&b'@') {
        return Ok(Keys::One(address));
    }
    if address.contains(&b'/') {
        let text = std::str::from_utf8(address).map_err(|_| ParseError("bad CIDR block".into()))?;
        let len = text.rsplit_once('/').and_then(|(_, l)| l.parse().ok()).unwrap_or(0);
        return cidr::expand(text)
            .map(|keys| Keys::Block { keys, len })
            .map_err(ParseError);
    }
    match address.iter().position(|&b| b == b'-') {
        Some(dash) => range(address, dash).map(Keys::Many),
        None => Ok(Keys::One(address)),
    }
}

/// 0.88's range: the number before the first `-` (back to the previous `.`) and the
/// one after it (up to the next `.`); empty numbers count as 0, the upper bound is
/// clamped to 255, and a lower bound above the upper one yields no keys at all.
fn range(address: &[u8], dash: usize) -> Result<Vec<Vec<u8>>, ParseError> {
    let left = address[..dash].iter().rposition(|&b| b == b'.').map_or(0, |i| i + 1);
    let right = dash
        + 1
        + address[dash + 1..]
            .iter()
            .position(|&b| b == b'.')
            .unwrap_or(address.len() - dash - 1);
    let number = |s: &[u8]| -> Result<u64, ParseError> {
        if !s.iter().all(u8::is_ascii_digit) {
            return err("bad range: expected numbers around '-'");
        }
        Ok(s.iter()
            .fold(0u64, |n, d| n.saturating_mul(10).saturating_add(u64::from(d - b'0'))))
    };
    let low = number(&address[left..dash])?;
    let high = number(&address[dash + 1..right])?.min(255);
    Ok((low..=high)
        .map(|n| [&address[..left], n.to_string().as_bytes(), &address[right..]].concat())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Vec<(String, String)>, ParseError> {
        let mut data = Vec::new();
        let keys = parse_line(line.as_bytes(), &mut data)?;
        let data = String::from_utf8(data.clone()).unwrap();
        Ok(keys
            .iter()
            .map(|k| (String::from_utf8(k.to_vec()).unwrap(), data.clone()))
            .collect())
    }

    fn recs(line: &str) -> Vec<(String, String)> {
        parse(line).unwrap()
    }

    fn one(k: &str, d: &str) -> Vec<(String, String)> {
        vec![(k.to_string(), d.to_string())]
    }

    #[test]
    fn reference_table() {
        assert_eq!(
            recs("127.0.0.1:allow,RELAYCLIENT=\"\""),
            one("127.0.0.1", "+RELAYCLIENT=\0")
        );
        assert_eq!(
            recs("192.168.10.:allow,RELAYCLIENT=''"),
            one("192.168.10.", "+RELAYCLIENT=\0")
        );
        assert_eq!(recs(":allow"), one("", ""));
        assert_eq!(recs("=.example.org:deny"), one("=.example.org", "D\0"));
        assert_eq!(
            recs("joe@127.0.0.2:allow,WHO=/joe/"),
            one("joe@127.0.0.2", "+WHO=joe\0")
        );
        assert_eq!(
            recs("172.16.0.1:allow,A=\"1\",B='two',C=|x y|,D=\"\""),
            one("172.16.0.1", "+A=1\0+B=two\0+C=x y\0+D=\0")
        );
        assert_eq!(recs("10.9.9.9:deny,FOO=\"bar\""), one("10.9.9.9", "D\0+FOO=bar\0"));
        assert_eq!(recs("172.16.0.2:allow   \n"), one("172.16.0.2", ""));
        assert_eq!(
            recs("1.2.3.4:allow,FOO=\"a,b\",N=%with spaces and \"quotes\"%"),
            one("1.2.3.4", "+FOO=a,b\0+N=with spaces and \"quotes\"\0")
        );
    }

    #[test]
    fn ignored_lines() {
        assert!(recs("# comment:allow").is_empty());
        assert!(recs("\n").is_empty());
        assert!(recs("allowx").is_empty());
        assert!(recs("   spaced line").is_empty());
        assert_eq!(recs("127.0.0.1 :allow"), one("127.0.0.1 ", ""));
    }

    #[test]
    fn ranges() {
        let keys = |l: &str| recs(l).into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys("10.1.2.3-5:deny"), ["10.1.2.3", "10.1.2.4", "10.1.2.5"]);
        assert_eq!(keys("10.2-3.:allow"), ["10.2.", "10.3."]);
        assert_eq!(keys("1.2.3.-2:allow"), ["1.2.3.0", "1.2.3.1", "1.2.3.2"]);
        assert_eq!(keys("1.2.3.254-300:allow"), ["1.2.3.254", "1.2.3.255"]);
        assert!(keys("1.2.3.9-2:allow").is_empty());
        assert!(keys("1.2.3.4-:allow").is_empty());
        assert_eq!(keys("=a-b.example:allow"), ["=a-b.example"]);
        assert_eq!(keys("x@1.2.3.4-5:allow"), ["x@1.2.3.4-5"]);
        assert!(parse("1.2.3.a-b:allow").is_err());
        assert!(parse("1-2-3:allow").is_err());
    }

    #[test]
    fn ipv6_separator() {
        assert_eq!(recs("::1:allow,X=\"1\""), one("::1", "+X=1\0"));
        assert_eq!(recs("2001:db8::5:deny"), one("2001:db8::5", "D\0"));
    }

    #[test]
    fn errors_have_reasons() {
        let e = |l: &str| parse(l).unwrap_err().0;
        assert!(e(":allow\r").contains("carriage return"));
        assert!(e("1.2.3.4:Allow").contains("allow or deny"));
        assert!(e("1.2.3.4:allowx").contains("comma"));
        assert!(e("1.2.3.4:allow,").contains("VAR="));
        assert!(e("1.2.3.4:allow,X=\"a").contains("closing"));
        assert!(e("1.2.3.4:allow,X=").contains("nothing after"));
        assert!(e("1.2.3.4:allow,=\"\"").contains("variable name"));
        assert!(e("1.2.3.4:allow,FOO BAR=\"x\"").contains("variable name"));
        assert!(e("1.2.3.4:allow,X=\"a\"b").contains("comma"));
        assert!(e("1.2.3.4:allow,X=\"a\0+PATH=/x\"").contains("NUL"));
    }
}
