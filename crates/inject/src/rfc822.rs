//! RFC 822 address lists as qmail-inject reads and rewrites them (qmail-header(5)).
//!
//! A field's contents are split into tokens that remember where they came from, so a
//! rewritten address replaces just its own bytes and the rest of the field (names,
//! comments, the sender's own folding) stays as it was written.

use std::ops::Range;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    Atom(Vec<u8>),
    /// A quoted string, unescaped.
    Quote(Vec<u8>),
    /// A domain literal's contents, without the brackets.
    Literal(Vec<u8>),
    Comment,
    /// One of `@ . , ; : < >`.
    Special(u8),
}

/// Tokens with their byte ranges in the field's contents.
pub type Tokens = Vec<(Tok, Range<usize>)>;

fn special(b: u8) -> bool {
    b"()<>@,;:\\\".[]".contains(&b)
}

/// Splits `s`; None if a quote, comment or literal is not closed.
pub fn tokenize(s: &[u8]) -> Option<Tokens> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let start = i;
        let b = s[i];
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                let mut depth = 0;
                loop {
                    match s.get(i)? {
                        b'\\' => i += 1,
                        b'(' => depth += 1,
                        b')' => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                i += 1;
                out.push((Tok::Comment, start..i));
            }
            b'"' | b'[' => {
                let close = if b == b'"' { b'"' } else { b']' };
                let mut text = Vec::new();
                i += 1;
                loop {
                    match *s.get(i)? {
                        b'\\' => {
                            text.push(*s.get(i + 1)?);
                            i += 2;
                        }
                        c if c == close => break,
                        b'\n' => i += 1, // folding inside a quoted string
                        c => {
                            text.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
                out.push((
                    if b == b'"' {
                        Tok::Quote(text)
                    } else {
                        Tok::Literal(text)
                    },
                    start..i,
                ));
            }
            b')' | b']' | b'\\' => {
                i += 1;
                out.push((Tok::Atom(vec![b]), start..i));
            }
            _ if special(b) => {
                i += 1;
                out.push((Tok::Special(b), start..i));
            }
            _ => {
                while i < s.len() && !special(s[i]) && !b" \t\r\n".contains(&s[i]) {
                    i += 1;
                }
                out.push((Tok::Atom(s[start..i].to_vec()), start..i));
            }
        }
    }
    Some(out)
}

/// The addresses of an address list: for each, the indexes of its address tokens
/// (comments and display names left out). `<>` gives an empty address.
pub fn addresses(toks: &Tokens) -> Vec<Vec<usize>> {
    let mut out = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut angle: Option<Vec<usize>> = None;
    let mut in_angle = false;
    let finish = |cur: &mut Vec<usize>, angle: &mut Option<Vec<usize>>, out: &mut Vec<Vec<usize>>| {
        match angle.take() {
            Some(a) => out.push(a),
            None if !cur.is_empty() => out.push(std::mem::take(cur)),
            None => {}
        }
        cur.clear();
    };
    for (i, (t, _)) in toks.iter().enumerate() {
        match t {
            Tok::Comment => {}
            Tok::Special(b'<') if !in_angle => {
                in_angle = true;
                angle = Some(Vec::new());
            }
            Tok::Special(b'>') if in_angle => in_angle = false,
            _ if in_angle => angle.get_or_insert_with(Vec::new).push(i),
            // A group's name ends at its colon; its end is a semicolon.
            Tok::Special(b':') => cur.clear(),
            Tok::Special(b',' | b';') => finish(&mut cur, &mut angle, &mut out),
            _ => cur.push(i),
        }
    }
    finish(&mut cur, &mut angle, &mut out);
    out
}

/// `local@host` as it goes into a header: quoted strings keep their quotes.
pub fn unparse(addr: &[Tok]) -> Vec<u8> {
    render(addr, true)
}

/// `local@host` as it goes into the envelope: quotes removed.
pub fn unquote(addr: &[Tok]) -> Vec<u8> {
    render(addr, false)
}

fn render(addr: &[Tok], quoted: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for t in addr {
        match t {
            Tok::Quote(q) if quoted => out.extend_from_slice(&quote(q)),
            Tok::Atom(a) | Tok::Quote(a) => out.extend_from_slice(a),
            Tok::Literal(l) => {
                out.push(b'[');
                for &c in l {
                    if quoted && matches!(c, b'[' | b']' | b'\\') {
                        out.push(b'\\');
                    }
                    out.push(c);
                }
                out.push(b']');
            }
            Tok::Special(c) => out.push(*c),
            Tok::Comment => {}
        }
    }
    out
}

/// `"..."` with `\` before `"` and `\`.
pub fn quote(s: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    for &c in s {
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
    out
}

/// Whether a local part must be quoted to survive as one atom-and-dots sequence.
pub fn quote_needed(s: &[u8]) -> bool {
    s.is_empty()
        || s[0] == b'.'
        || s[s.len() - 1] == b'.'
        || s.windows(2).any(|w| w == b"..")
        || s.iter().any(|&c| c <= 32 || c >= 127 || (special(c) && c != b'.'))
}

/// qmail's quote2: an address given on a command line, with its local part (before
/// the last `@`) quoted if it needs it, ready for [`tokenize`].
pub fn quote_address(s: &[u8]) -> Vec<u8> {
    let (local, host) = match s.iter().rposition(|&c| c == b'@') {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let mut out = if quote_needed(local) && !local.is_empty() {
        quote(local)
    } else {
        local.to_vec()
    };
    if let Some(h) = host {
        out.extend_from_slice(h);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(s: &str) -> Vec<String> {
        let t = tokenize(s.as_bytes()).unwrap();
        addresses(&t)
            .iter()
            .map(|a| {
                let toks: Vec<Tok> = a.iter().map(|&i| t[i].0.clone()).collect();
                String::from_utf8(unparse(&toks)).unwrap()
            })
            .collect()
    }

    #[test]
    fn address_lists() {
        assert_eq!(
            addrs("a@b, c@d (Somebody), A Person <e@f>,\n   random group: g@h, i@j;, k@l"),
            ["a@b", "c@d", "e@f", "g@h", "i@j", "k@l"]
        );
        assert_eq!(addrs("\"Smith, J.\" <j@x>, <>"), ["j@x", ""]);
        assert_eq!(addrs("\"a b\"@x"), ["\"a b\"@x"]);
        assert_eq!(addrs("<@r1,@r2:u@h>"), ["@r1,@r2:u@h"]);
        assert_eq!(addrs("u@[1.2.3.4] (c (nested) x)"), ["u@[1.2.3.4]"]);
        assert_eq!(addrs("recipient list not shown: ;"), Vec::<String>::new());
        assert!(tokenize(b"\"open").is_none());
        assert!(tokenize(b"a (open").is_none());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_address(b"joe@x"), b"joe@x");
        assert_eq!(quote_address(b"a b@x"), b"\"a b\"@x");
        assert_eq!(quote_address(b"a\"q@x"), b"\"a\\\"q\"@x");
        assert_eq!(quote_address(b"j.o.e"), b"j.o.e");
        assert_eq!(quote_address(b".joe@x"), b"\".joe\"@x");
        let t = tokenize(&quote_address(b"a b@x")).unwrap();
        let toks: Vec<Tok> = t.into_iter().map(|(t, _)| t).collect();
        assert_eq!(unquote(&toks), b"a b@x");
    }
}
