//! The ucspi-tcp rules CDB, as tcpserver and tcprulescheck read it.
//!
//! A client is looked up under a fixed sequence of keys (`INFO@IP`, `INFO@=HOST`, `IP`,
//! `=HOST`, IP prefixes, host suffixes, `=`, the empty key); the first key present
//! wins and its whole record applies. A record is a list of NUL-terminated items: `D`
//! denies, `+NAME=VALUE` sets a variable. This module only reads; tcprules writes.
//!
//! The CDB is read with [`crate::cdb`]: a few preads per lookup and nothing mapped, so
//! a large rules file costs no address space under the seeds' `softlimit -m`, and a
//! damaged one is an error (tcpserver drops the connection), never a rule.

use std::io;
use std::path::Path;

/// What the rules know about a client.
#[derive(Clone, Copy, Debug, Default)]
pub struct Client<'a> {
    /// The address as tcpserver prints it: dotted quad, or compressed IPv6.
    pub ip: &'a str,
    /// `$TCPREMOTEHOST`, if set.
    pub host: Option<&'a str>,
    /// `$TCPREMOTEINFO`, if set (even if empty).
    pub info: Option<&'a str>,
}

/// One item of a rule's record, in file order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Deny,
    Set(Vec<u8>, Vec<u8>),
}

/// The rule that matched: its key and its items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub key: Vec<u8>,
    pub items: Vec<Item>,
}

impl Rule {
    pub fn denies(&self) -> bool {
        self.items.contains(&Item::Deny)
    }

    /// The variables to set, in order (a later one overrides an earlier one).
    pub fn vars(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.items.iter().filter_map(|i| match i {
            Item::Set(n, v) => Some((n.as_slice(), v.as_slice())),
            Item::Deny => None,
        })
    }
}

/// Splits a record into its items; anything but `D…` and `+NAME=VALUE` is ignored,
/// as tcpserver ignores it.
pub fn parse_record(data: &[u8]) -> Vec<Item> {
    let mut items = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
        let item = &rest[..end];
        match item.first() {
            Some(b'D') => items.push(Item::Deny),
            Some(b'+') => {
                let body = &item[1..];
                if let Some(eq) = body.iter().position(|&b| b == b'=') {
                    items.push(Item::Set(body[..eq].to_vec(), body[eq + 1..].to_vec()));
                }
            }
            _ => {}
        }
        rest = &rest[(end + 1).min(rest.len())..];
    }
    items
}

/// The keys tried for `c`, in tcpserver's order.
pub fn candidate_keys(c: &Client) -> Vec<Vec<u8>> {
    let mut keys: Vec<Vec<u8>> = Vec::new();
    let cat = |parts: &[&str]| parts.concat().into_bytes();
    if let Some(info) = c.info {
        keys.push(cat(&[info, "@", c.ip]));
        if let Some(host) = c.host {
            keys.push(cat(&[info, "@=", host]));
        }
    }
    keys.push(c.ip.as_bytes().to_vec());
    if let Some(host) = c.host {
        keys.push(cat(&["=", host]));
    }
    // Prefixes ending in `.` (IPv4) or `:` (IPv6), longest first.
    let ip = c.ip.as_bytes();
    for len in (1..ip.len()).rev() {
        if ip[len - 1] == b'.' || ip[len - 1] == b':' {
            keys.push(ip[..len].to_vec());
        }
    }
    if let Some(host) = c.host {
        for (i, _) in host.match_indices('.') {
            keys.push(cat(&["=", &host[i..]]));
        }
        keys.push(b"=".to_vec());
    }
    keys.push(Vec::new());
    keys
}

/// Looks `c` up in the rules CDB at `path`: the first key present wins. `Ok(None)`
/// means no key matched (tcpserver then allows, with no variables). A missing file
/// is `NotFound`; a damaged one is an error, never a rule.
pub fn lookup(path: &Path, c: &Client) -> io::Result<Option<Rule>> {
    let db = crate::cdb::Cdb::open(path)?.ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))?;
    for key in candidate_keys(c) {
        if let Some(data) = db.get(&key)? {
            return Ok(Some(Rule {
                items: parse_record(&data),
                key,
            }));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(ip: &str, host: Option<&str>, info: Option<&str>) -> Vec<String> {
        candidate_keys(&Client { ip, host, info })
            .into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect()
    }

    #[test]
    fn ipv4_order_without_host() {
        assert_eq!(
            keys("192.168.10.7", None, None),
            ["192.168.10.7", "192.168.10.", "192.168.", "192.", ""]
        );
    }

    #[test]
    fn full_order_with_info_and_host() {
        assert_eq!(
            keys("10.1.2.3", Some("mx.sub.example.test"), Some("joe")),
            [
                "joe@10.1.2.3",
                "joe@=mx.sub.example.test",
                "10.1.2.3",
                "=mx.sub.example.test",
                "10.1.2.",
                "10.1.",
                "10.",
                "=.sub.example.test",
                "=.example.test",
                "=.test",
                "=",
                "",
            ]
        );
    }

    #[test]
    fn empty_info_still_counts() {
        assert_eq!(keys("127.0.0.1", None, Some(""))[0], "@127.0.0.1");
    }

    #[test]
    fn ipv6_prefixes_stop_at_colons() {
        assert_eq!(
            keys("2001:db8::1", None, None),
            ["2001:db8::1", "2001:db8::", "2001:db8:", "2001:", ""]
        );
        assert_eq!(keys("::1", None, None), ["::1", "::", ":", ""]);
    }

    #[test]
    fn record_items() {
        assert_eq!(
            parse_record(b"D\0+FOO=bar\0+X=a=b\0junk\0+NOEQ\0"),
            vec![
                Item::Deny,
                Item::Set(b"FOO".to_vec(), b"bar".to_vec()),
                Item::Set(b"X".to_vec(), b"a=b".to_vec())
            ]
        );
        assert_eq!(parse_record(b""), vec![]);
        assert_eq!(parse_record(b"+A=1"), vec![Item::Set(b"A".to_vec(), b"1".to_vec())]);
    }

    #[test]
    fn lookup_first_key_and_first_record_win() {
        let dir = std::env::temp_dir().join(format!("rqmail-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("r.cdb");
        let mut w = cdb2::CDBWriter::create(&path).unwrap();
        w.add(b"10.1.", b"+WHO=prefix\0").unwrap();
        w.add(b"10.1.2.3", b"D\0").unwrap();
        w.add(b"10.1.2.3", b"+WHO=second\0").unwrap();
        w.add(b"", b"+WHO=default\0").unwrap();
        w.finish().unwrap();
        let get = |ip| {
            lookup(
                &path,
                &Client {
                    ip,
                    host: None,
                    info: None,
                },
            )
            .unwrap()
            .unwrap()
        };
        assert!(get("10.1.2.3").denies());
        assert_eq!(get("10.1.9.9").vars().next().unwrap().1, b"prefix");
        assert_eq!(get("11.0.0.1").key, b"");
        assert!(lookup(&dir, &Client::default()).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
