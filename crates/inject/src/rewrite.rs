//! qmail-inject's address rewriting (qmail-header(5)): a lone box gets the default
//! host, a host without dots gets the default domain, a host ending in `+` gets the
//! plus domain, source routes and stray leading `@`/trailing `.` are dropped.

use crate::rfc822::{tokenize, Tok};

pub struct Rewriter {
    /// `@defaulthost`
    host: Vec<Tok>,
    /// `.defaultdomain`
    domain: Vec<Tok>,
    /// `.plusdomain`
    plus: Vec<Tok>,
}

fn toks(prefix: &str, name: &[u8]) -> Vec<Tok> {
    let text = [prefix.as_bytes(), name].concat();
    tokenize(&text)
        .unwrap_or_default()
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| *t != Tok::Comment)
        .collect()
}

impl Rewriter {
    pub fn new(defaulthost: &[u8], defaultdomain: &[u8], plusdomain: &[u8]) -> Rewriter {
        Rewriter {
            host: toks("@", defaulthost),
            domain: toks(".", defaultdomain),
            plus: toks(".", plusdomain),
        }
    }

    /// Rewrites one address (its tokens, in order).
    pub fn rewrite(&self, a: &mut Vec<Tok>) {
        if a.is_empty() || a.ends_with(&[Tok::Special(b'@'), Tok::Literal(Vec::new())]) {
            return; // <> and <foo@[]> stay
        }
        // A source route: <@r1,@r2:box@host> -> <box@host>.
        if a[0] == Tok::Special(b'@') {
            match a.iter().position(|t| *t == Tok::Special(b':')) {
                Some(colon) => drop(a.drain(..=colon)),
                None => a.clear(),
            }
        }
        for stray in [b'.', b'@'] {
            if a.last() == Some(&Tok::Special(stray)) {
                a.pop();
            }
        }
        if a.is_empty() {
            return;
        }
        if !a.contains(&Tok::Special(b'@')) {
            a.extend(self.host.iter().cloned());
        }
        if let Some(Tok::Atom(last)) = a.last_mut() {
            if last.last() == Some(&b'+') {
                last.pop();
                a.extend(self.plus.iter().cloned());
            }
        }
        let host = a.iter().rev().take_while(|t| **t != Tok::Special(b'@'));
        if !host.clone().any(|t| matches!(t, Tok::Special(b'.') | Tok::Literal(_))) {
            a.extend(self.domain.iter().cloned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfc822::{unparse, Tok};

    fn rw(s: &str) -> String {
        let r = Rewriter::new(b"mammoth", b"cs.berkeley.edu", b"berkeley.edu");
        let mut a: Vec<Tok> = tokenize(s.as_bytes()).unwrap().into_iter().map(|(t, _)| t).collect();
        r.rewrite(&mut a);
        String::from_utf8(unparse(&a)).unwrap()
    }

    #[test]
    fn qmail_header_examples() {
        assert_eq!(rw("djb@silverton"), "djb@silverton.cs.berkeley.edu");
        assert_eq!(rw("eric@mammoth.cs+"), "eric@mammoth.cs.berkeley.edu");
        assert_eq!(rw("eric@mammoth+"), "eric@mammoth.berkeley.edu");
        assert_eq!(rw("djb"), "djb@mammoth.cs.berkeley.edu");
        assert_eq!(rw("djb@[128.32.183.163]"), "djb@[128.32.183.163]");
        assert_eq!(rw("djb@x.y.z"), "djb@x.y.z");
        assert_eq!(rw("@r1,@r2:box@host.org"), "box@host.org");
        assert_eq!(rw("box@host.org."), "box@host.org");
        assert_eq!(rw("box@"), "box@mammoth.cs.berkeley.edu");
        assert_eq!(rw("\"a b\"@x.org"), "\"a b\"@x.org");
        assert_eq!(rw(""), "");
        assert_eq!(rw("foo@[]"), "foo@[]");
        assert_eq!(rw("@"), "");
    }
}
