//! The settings of one session: qmail's control files, read once at the start, and
//! the variables tcpserver and its rules set.

use qmail::control;
use std::io;
use std::path::{Path, PathBuf};

pub struct Settings {
    pub me: String,
    pub greeting: String,
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
            me: String::from_utf8_lossy(&control::read_line_or(home, "me", false, "localhost")?).into_owned(),
            greeting: String::from_utf8_lossy(&greeting).into_owned(),
            localiphost: Some(control::read_line_or(home, "localiphost", true, "")?).filter(|v| !v.is_empty()),
            timeout: number(home, "timeoutsmtpd", 1200)?.max(1),
            rcpthosts: list(&c.join("rcpthosts"))?,
            morercpthosts: c.join("morercpthosts.cdb"),
            databytes,
            badmailfrom: list(&c.join("badmailfrom"))?.unwrap_or_default(),
            badrcptto: list(&c.join("badrcptto"))?.unwrap_or_default(),
            maxrcpt: number(home, "maxrcpt", 1000)? as usize,
        })
    }

    /// qmail's rcpthosts: the domain itself, or a `.suffix` line for any subdomain,
    /// in control/rcpthosts or control/morercpthosts.cdb. An address without `@` is
    /// local. Missing rcpthosts: nothing is ours.
    pub fn rcpthost(&self, addr: &[u8]) -> bool {
        if !addr.contains(&b'@') {
            return self.rcpthosts.is_some();
        }
        let Some(hosts) = &self.rcpthosts else {
            return false;
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
            return true;
        }
        let Ok(size) = std::fs::metadata(&self.morercpthosts).map(|m| m.len()) else {
            return false;
        };
        qmail::rlimit::with_more_memory(size, || {
            let db = cdb2::CDB::open(&self.morercpthosts)?;
            Ok(keys.iter().any(|k| db.get(k).is_some()))
        })
        .unwrap_or(false)
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
        assert!(s.rcpthost(b"a@example.com") && s.rcpthost(b"a@EXAMPLE.COM") && s.rcpthost(b"postmaster"));
        assert!(s.rcpthost(b"a@x.sub.example.org") && !s.rcpthost(b"a@sub.example.org"));
        assert!(!s.rcpthost(b"a@example.net") && !s.rcpthost(b"a@xexample.com"));
        assert_eq!(s.timeout, 1200);
        std::fs::remove_file(d.join("control/rcpthosts")).unwrap();
        let s = Settings::load(&d).unwrap();
        assert!(!s.rcpthost(b"a@example.com") && !s.rcpthost(b"postmaster"));
        let list = vec![b"spam@example.com".to_vec(), b"@bad.example".to_vec()];
        assert!(Settings::listed(&list, b"SPAM@example.com") && Settings::listed(&list, b"x@bad.example"));
        assert!(!Settings::listed(&list, b"x@good.example"));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
