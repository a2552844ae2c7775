//! Where an envelope recipient goes, as qmail-send's preprocessing decides it
//! (qmail-send(8), qmail-control(5)): `@envnoathost` added, percenthack undone, then
//! `locals` (the local channel), then `virtualdomains` (local, with the domain's
//! prepend), else remote. qmail-send rewrites with it; qmail-smtpd asks it whether a
//! recipient is local before it looks for the mailbox, so both give one answer.

use std::collections::HashMap;
use std::io;
use std::path::Path;

/// A table of lines, looked up ASCII case-insensitively; a key listed twice
/// means its last line, as qmail's constmap does.
#[derive(Clone, Debug, Default)]
pub struct Map {
    entries: HashMap<Vec<u8>, Vec<u8>>,
}

impl Map {
    /// `locals`, `percenthack`: each line is a key.
    pub fn keys(lines: &[Vec<u8>]) -> Map {
        let mut m = Map::default();
        for l in lines {
            m.entries.insert(l.to_ascii_lowercase(), Vec::new());
        }
        m
    }

    /// `virtualdomains`: `key:value`, split at the first colon; a line without a
    /// colon means nothing.
    pub fn pairs(lines: &[Vec<u8>]) -> Map {
        let mut m = Map::default();
        for l in lines {
            if let Some(i) = l.iter().position(|&b| b == b':') {
                m.entries.insert(l[..i].to_ascii_lowercase(), l[i + 1..].to_vec());
            }
        }
        m
    }

    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(&key.to_ascii_lowercase()).map(|v| v.as_slice())
    }
}

/// Where the address goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Local = 0,
    Remote = 1,
}

impl Channel {
    pub const ALL: [Channel; 2] = [Channel::Local, Channel::Remote];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The queue directory of its recipient lists.
    pub fn dir(self) -> &'static str {
        match self {
            Channel::Local => "local",
            Channel::Remote => "remote",
        }
    }
}

/// qmail's control_readfile: the lines of a list file, trailing spaces and tabs
/// removed, blank and `#` lines skipped. A missing file is `None`; with `me`, a
/// missing file is that one line instead.
pub fn read_list(path: &Path, me: Option<&[u8]>) -> io::Result<Option<Vec<Vec<u8>>>> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(me.map(|m| vec![m.to_vec()])),
        Err(e) => return Err(e),
    };
    let mut lines = Vec::new();
    for line in data.split(|&b| b == b'\n') {
        let mut l = line;
        while let [rest @ .., b' ' | b'\t'] = l {
            l = rest;
        }
        if !l.is_empty() && l[0] != b'#' {
            lines.push(l.to_vec());
        }
    }
    Ok(Some(lines))
}

/// qmail's control_readint: the leading digits of the first line; a file that is
/// missing, or whose line starts with no digit, leaves the default.
/// The controls [`Addresses::rewrite`] reads.
#[derive(Clone, Debug)]
pub struct Addresses {
    pub envnoathost: Vec<u8>,
    pub locals: Map,
    pub percenthack: Map,
    pub vdoms: Map,
}

impl Addresses {
    /// From `home/control`; `me` is control/me (the default of `locals` and
    /// `envnoathost`). Neither `locals` nor `me` is an error.
    pub fn load(home: &Path, me: Option<&[u8]>) -> io::Result<Addresses> {
        let c = home.join("control");
        let envnoathost = match crate::control::read_line(&c.join("envnoathost"))? {
            Some(v) => v,
            None => me.map_or(b"envnoathost".to_vec(), <[u8]>::to_vec),
        };
        Ok(Addresses {
            envnoathost,
            locals: Addresses::read_locals(home, me)?,
            percenthack: Map::keys(&read_list(&c.join("percenthack"), None)?.unwrap_or_default()),
            vdoms: Addresses::read_vdoms(home)?,
        })
    }

    /// `locals`, else `me` (what qmail-send's SIGHUP rereads, with [`Addresses::read_vdoms`]).
    pub fn read_locals(home: &Path, me: Option<&[u8]>) -> io::Result<Map> {
        let locals = read_list(&home.join("control/locals"), me)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "neither control/locals nor control/me"))?;
        Ok(Map::keys(&locals))
    }

    pub fn read_vdoms(home: &Path) -> io::Result<Map> {
        let vdoms = read_list(&home.join("control/virtualdomains"), None)?.unwrap_or_default();
        Ok(Map::pairs(&vdoms))
    }

    /// The recipient as preprocessing writes it, and its channel (qmail-send's
    /// rewrite()): `@envnoathost` added, percenthack undone, then locals, then
    /// virtualdomains (whole address, domain, each `.suffix`, the empty key), else
    /// remote. A virtual domain's prepend goes in front with a `-`.
    pub fn rewrite(&self, recip: &[u8]) -> (Channel, Vec<u8>) {
        let mut addr = recip.to_vec();
        let mut i = match rchr(&addr, b'@') {
            Some(i) => i,
            None => {
                let i = addr.len();
                addr.push(b'@');
                addr.extend_from_slice(&self.envnoathost);
                i
            }
        };
        while self.percenthack.get(&addr[i + 1..]).is_some() {
            let Some(j) = rchr(&addr[..i], b'%') else { break };
            addr.truncate(i);
            i = j;
            addr[i] = b'@';
        }
        let at = rchr(&addr, b'@').unwrap_or(0);
        if self.locals.get(&addr[at + 1..]).is_some() {
            return (Channel::Local, addr);
        }
        for i in 0..=addr.len() {
            let candidate = i == 0 || i == at + 1 || i == addr.len() || (i > at && addr[i] == b'.');
            if !candidate {
                continue;
            }
            if let Some(prepend) = self.vdoms.get(&addr[i..]) {
                if prepend.is_empty() {
                    break;
                }
                let mut out = prepend.to_vec();
                out.push(b'-');
                out.extend_from_slice(&addr);
                return (Channel::Local, out);
            }
        }
        (Channel::Remote, addr)
    }

    /// The recipient a bounce names: a virtual domain's `prepend-` taken off again
    /// (the domain's own key, its `.suffix` keys, the empty key; not the
    /// whole-address key), as qmail's stripvdomprepend.
    pub fn strip_vdom_prepend<'a>(&self, recip: &'a [u8]) -> &'a [u8] {
        let Some(at) = rchr(recip, b'@') else {
            return recip;
        };
        let domain = &recip[at + 1..];
        for i in 0..=domain.len() {
            if !(i == 0 || i == domain.len() || domain[i] == b'.') {
                continue;
            }
            if let Some(prepend) = self.vdoms.get(&domain[i..]) {
                if prepend.is_empty() {
                    break;
                }
                let n = prepend.len();
                if recip.len() <= n || &recip[..n] != prepend || recip[n] != b'-' {
                    break;
                }
                return &recip[n + 1..];
            }
        }
        recip
    }
}

fn rchr(s: &[u8], c: u8) -> Option<usize> {
    s.iter().rposition(|&b| b == c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn controls(locals: &[&str], vdoms: &[&str], percent: &[&str]) -> Addresses {
        let l = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
        Addresses {
            envnoathost: b"me.example".to_vec(),
            locals: Map::keys(&l(locals)),
            percenthack: Map::keys(&l(percent)),
            vdoms: Map::pairs(&l(vdoms)),
        }
    }

    fn rw(c: &Addresses, r: &str) -> (Channel, String) {
        let (ch, a) = c.rewrite(r.as_bytes());
        (ch, String::from_utf8(a).unwrap())
    }

    #[test]
    fn rewrite_rules() {
        use Channel::*;
        let c = controls(
            &["me.example", "Example.COM"],
            &[
                "nowhere.mil:joe-foo",
                "special@virt.example:spec",
                "virt.example:virt",
                ".sub.example:subs",
                "except.sub.example:",
                "dup.example:first",
                "dup.example:second",
                "nocolon.example",
            ],
            &["gw.example", "c2"],
        );
        let cases = [
            ("bob", Local, "bob@me.example"),
            ("bob@EXAMPLE.com", Local, "bob@EXAMPLE.com"),
            ("info@nowhere.mil", Local, "joe-foo-info@nowhere.mil"),
            ("info@NoWhere.MIL", Local, "joe-foo-info@NoWhere.MIL"),
            ("special@virt.example", Local, "spec-special@virt.example"),
            ("other@virt.example", Local, "virt-other@virt.example"),
            ("a@x.sub.example", Local, "subs-a@x.sub.example"),
            ("a@y.x.sub.example", Local, "subs-a@y.x.sub.example"),
            ("a@except.sub.example", Remote, "a@except.sub.example"),
            ("a@dup.example", Local, "second-a@dup.example"),
            ("a@nocolon.example", Remote, "a@nocolon.example"),
            ("a@elsewhere.org", Remote, "a@elsewhere.org"),
            // percenthack: the last % becomes the @, again while the domain is listed.
            ("a%b%c@gw.example", Remote, "a%b@c"),
            ("a%b%c2@gw.example", Remote, "a@b"),
            ("a%b%gw.example@gw.example", Remote, "a@b"),
            ("u%me.example@gw.example", Local, "u@me.example"),
            ("nopercent@gw.example", Remote, "nopercent@gw.example"),
            // a % before the domain's own @ only counts in the local part
            ("a%b@elsewhere.org", Remote, "a%b@elsewhere.org"),
        ];
        for (input, ch, out) in cases {
            assert_eq!(rw(&c, input), (ch, out.to_string()), "{input}");
        }
        // The empty key catches everything that is not local.
        let c = controls(&["me.example"], &[":alias-catch"], &[]);
        assert_eq!(rw(&c, "x@any.org"), (Local, "alias-catch-x@any.org".into()));
        assert_eq!(rw(&c, "x@me.example"), (Local, "x@me.example".into()));
        // Locals win over virtualdomains.
        let c = controls(&["v.example"], &["v.example:pre"], &[]);
        assert_eq!(rw(&c, "x@v.example"), (Local, "x@v.example".into()));
        // An address that is nothing but an @.
        let c = controls(&["me.example"], &[], &[]);
        assert_eq!(rw(&c, "@"), (Remote, "@".into()));
        assert_eq!(rw(&c, ""), (Local, "@me.example".into()));
    }

    #[test]
    fn bounce_recipient_loses_the_prepend() {
        let c = controls(
            &[],
            &["nowhere.mil:joe-foo", ".sub.example:subs", "whole@w.example:w"],
            &[],
        );
        let s = |r: &str| String::from_utf8(c.strip_vdom_prepend(r.as_bytes()).to_vec()).unwrap();
        assert_eq!(s("joe-foo-info@nowhere.mil"), "info@nowhere.mil");
        assert_eq!(s("subs-a@x.sub.example"), "a@x.sub.example");
        assert_eq!(s("other-info@nowhere.mil"), "other-info@nowhere.mil");
        assert_eq!(s("w-whole@w.example"), "w-whole@w.example");
        assert_eq!(s("joe-foo@nowhere.mil"), "joe-foo@nowhere.mil");
        assert_eq!(s("plain"), "plain");
    }
}
