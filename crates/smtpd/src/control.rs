//! The settings of one session: qmail's control files, read once at the start, and
//! the variables tcpserver and its rules set.

use qmail::control;
use std::io;
use std::path::{Path, PathBuf};

pub struct Settings {
    pub me: Vec<u8>,
    pub greeting: Vec<u8>,
    pub localiphost: Option<Vec<u8>>,
    pub timeout: u64,
    /// `None` when control/rcpthosts is missing: no domain is ours (rqmail refuses
    /// to be an open relay where qmail would be one).
    pub rcpthosts: Option<Vec<Vec<u8>>>,
    pub morercpthosts: PathBuf,
    pub databytes: u64,
    pub badmailfrom: Vec<Vec<u8>>,
    pub badrcptto: Vec<Vec<u8>>,
    pub maxrcpt: usize,
    /// `control/rcptcheck`: refuse unknown local recipients at RCPT.
    pub rcptcheck: Option<crate::rcptcheck::RcptCheck>,
}

/// Lines of a control file: trimmed, lower-cased, without blanks and `#` comments.
fn list(path: &Path) -> io::Result<Option<Vec<Vec<u8>>>> {
    match std::fs::read(path) {
        Ok(t) => Ok(Some(
            t.split(|&b| b == b'\n')
                .map(|l| l.trim_ascii().to_ascii_lowercase())
                .filter(|l| !l.is_empty() && l[0] != b'#')
                .collect(),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn number(home: &Path, name: &str, default: u64) -> io::Result<u64> {
    Ok(control::read_line(&home.join("control").join(name))?
        .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok())
        .unwrap_or(default))
}

impl Settings {
    pub fn load(home: &Path) -> io::Result<Settings> {
        let c = home.join("control");
        let greeting = control::read_line_or(home, "smtpgreeting", true, "")?;
        let mut databytes = number(home, "databytes", 0)?;
        if let Some(v) = std::env::var("DATABYTES").ok().and_then(|v| v.parse().ok()) {
            databytes = v;
        }
        Ok(Settings {
            me: control::read_line_or(home, "me", false, "localhost")?,
            greeting,
            localiphost: Some(control::read_line_or(home, "localiphost", true, "")?).filter(|v| !v.is_empty()),
            timeout: number(home, "timeoutsmtpd", 1200)?.max(1),
            rcpthosts: list(&c.join("rcpthosts"))?,
            morercpthosts: c.join("morercpthosts.cdb"),
            databytes,
            badmailfrom: list(&c.join("badmailfrom"))?.unwrap_or_default(),
            badrcptto: list(&c.join("badrcptto"))?.unwrap_or_default(),
            maxrcpt: number(home, "maxrcpt", 1000)? as usize,
            rcptcheck: crate::rcptcheck::RcptCheck::load(home)?,
        })
    }

    /// qmail's rcpthosts: the domain itself, or a `.suffix` line for any subdomain,
    /// in control/rcpthosts or control/morercpthosts.cdb. An address without `@` is
    /// local. Missing rcpthosts: nothing is ours. An unreadable or damaged
    /// morercpthosts.cdb is an error (the caller answers 421), never a match.
    pub fn rcpthost(&self, addr: &[u8]) -> io::Result<bool> {
        if !addr.contains(&b'@') {
            return Ok(self.rcpthosts.is_some());
        }
        let Some(hosts) = &self.rcpthosts else {
            return Ok(false);
        };
        let host = crate::addr::domain(addr);
        let mut keys = vec![&host[..]];
        keys.extend(
            host.iter()
                .enumerate()
                .filter(|(_, &b)| b == b'.')
                .map(|(i, _)| &host[i..]),
        );
        if keys.iter().any(|k| hosts.iter().any(|h| h == k)) {
            return Ok(true);
        }
        let Some(db) = qmail::cdb::Cdb::open(&self.morercpthosts)? else {
            return Ok(false);
        };
        for k in keys {
            if db.contains(k)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// An address, or its `@domain`, in a badmailfrom-style list.
    pub fn listed(list: &[Vec<u8>], addr: &[u8]) -> bool {
        let lower = addr.to_ascii_lowercase();
        let at = lower.iter().rposition(|&b| b == b'@').map(|i| &lower[i..]);
        list.iter().any(|l| *l == lower || Some(&l[..]) == at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcpthosts_and_lists() {
        let d = std::env::temp_dir().join(format!("rqmail-smtpd-control-{}", std::process::id()));
        std::fs::create_dir_all(d.join("control")).unwrap();
        std::fs::write(
            d.join("control/rcpthosts"),
            "Example.com\n.sub.example.org\n\n# comment\n",
        )
        .unwrap();
        let s = Settings::load(&d).unwrap();
        let ours = |s: &Settings, a: &[u8]| s.rcpthost(a).unwrap();
        assert!(ours(&s, b"a@example.com") && ours(&s, b"a@EXAMPLE.COM") && ours(&s, b"postmaster"));
        assert!(ours(&s, b"a@x.sub.example.org") && !ours(&s, b"a@sub.example.org"));
        assert!(!ours(&s, b"a@example.net") && !ours(&s, b"a@xexample.com"));
        // A damaged morercpthosts.cdb is an error for every domain not in rcpthosts.
        std::fs::write(d.join("control/morercpthosts.cdb"), vec![0x5a; 3000]).unwrap();
        assert!(s.rcpthost(b"a@example.net").is_err() && ours(&s, b"a@example.com"));
        std::fs::remove_file(d.join("control/morercpthosts.cdb")).unwrap();
        assert_eq!(s.timeout, 1200);
        std::fs::remove_file(d.join("control/rcpthosts")).unwrap();
        let s = Settings::load(&d).unwrap();
        assert!(!ours(&s, b"a@example.com") && !ours(&s, b"postmaster"));
        let list = vec![b"spam@example.com".to_vec(), b"@bad.example".to_vec()];
        assert!(Settings::listed(&list, b"SPAM@example.com") && Settings::listed(&list, b"x@bad.example"));
        assert!(!Settings::listed(&list, b"x@good.example"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
