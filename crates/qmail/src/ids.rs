//! The uids and gids of the qmail users, resolved once at install time into
//! `QMAILHOME/control/ids` by qmail-mkids, so no program looks users up at run time
//! (qmail compiled them in) and tests use numeric ids without touching /etc/passwd.
//!
//! One line per name: `user:uid:gid` for the eight users of qmail's conf-users and
//! for `qmailtls`, the TLS engine's own user; `group:gid` for qmail's two groups. `#`
//! starts a comment. `qmailtls` may be missing (a file written before it existed):
//! only ucspi-tlsd needs it, and refuses to run as root without it.
//!
//! ```text
//! alias:7790:7792
//! qmailq:7795:7791
//! qmailtls:7798:7798
//! qmail:7791
//! ```

use std::io;
use std::path::Path;

/// qmail's conf-users, in its order; `root` owns binaries and control files.
pub const USERS: [&str; 8] = [
    "alias", "qmaild", "qmaill", "root", "qmailp", "qmailq", "qmailr", "qmails",
];
/// The TLS engine's user (ucspi-tlsd drops its engine to it): not in qmail's list.
pub const TLS_USER: &str = "qmailtls";
/// qmail's conf-groups.
pub const GROUPS: [&str; 2] = ["qmail", "nofiles"];
/// Where the file lives, relative to QMAILHOME.
pub const FILE: &str = "control/ids";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    users: [(u32, u32); 8],
    groups: [u32; 2],
    tls: Option<(u32, u32)>,
}

impl Ids {
    /// Every user and group with the same ids: a one-user instance (`make run` as a
    /// normal user, tests without root).
    pub fn single(uid: u32, gid: u32) -> Ids {
        Ids {
            users: [(uid, gid); 8],
            groups: [gid; 2],
            tls: Some((uid, gid)),
        }
    }

    pub fn load(home: &Path) -> io::Result<Ids> {
        let text = std::fs::read(home.join(FILE))?;
        Ids::parse(&text).map_err(|m| io::Error::new(io::ErrorKind::InvalidData, m))
    }

    pub fn parse(text: &[u8]) -> Result<Ids, String> {
        let mut users = [None; 8];
        let mut groups = [None; 2];
        let mut tls = None;
        for (n, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = String::from_utf8_lossy(line);
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = || format!("line {}: bad entry: {line}", n + 1);
            let f: Vec<&str> = line.split(':').collect();
            let num = |s: &str| s.parse::<u32>().map_err(|_| bad());
            match f.as_slice() {
                [name, uid, gid] if *name == TLS_USER => tls = Some((num(uid)?, num(gid)?)),
                [name, uid, gid] => {
                    let i = USERS.iter().position(|u| u == name).ok_or_else(bad)?;
                    users[i] = Some((num(uid)?, num(gid)?));
                }
                [name, gid] => {
                    let i = GROUPS.iter().position(|g| g == name).ok_or_else(bad)?;
                    groups[i] = Some(num(gid)?);
                }
                _ => return Err(bad()),
            }
        }
        if let Some(i) = users.iter().position(|u| u.is_none()) {
            return Err(format!("no entry for user {}", USERS[i]));
        }
        if let Some(i) = groups.iter().position(|g| g.is_none()) {
            return Err(format!("no entry for group {}", GROUPS[i]));
        }
        Ok(Ids {
            users: users.map(|u| u.unwrap_or_default()),
            groups: groups.map(|g| g.unwrap_or_default()),
            tls,
        })
    }

    pub fn format(&self) -> String {
        let mut s = String::from("# user:uid:gid and group:gid of the qmail users; see INSTALL\n");
        for (name, (u, g)) in USERS.iter().zip(&self.users) {
            s += &format!("{name}:{u}:{g}\n");
        }
        if let Some((u, g)) = self.tls {
            s += &format!("{TLS_USER}:{u}:{g}\n");
        }
        for (name, g) in GROUPS.iter().zip(&self.groups) {
            s += &format!("{name}:{g}\n");
        }
        s
    }

    /// The uid of one of [`USERS`]; panics on any other name (a programming error).
    pub fn uid(&self, user: &str) -> u32 {
        self.users[index(&USERS, user)].0
    }

    /// The primary gid of one of [`USERS`].
    pub fn user_gid(&self, user: &str) -> u32 {
        self.users[index(&USERS, user)].1
    }

    /// The gid of `qmail` or `nofiles`.
    pub fn gid(&self, group: &str) -> u32 {
        self.groups[index(&GROUPS, group)]
    }

    pub fn set_user(&mut self, user: &str, uid: u32, gid: u32) {
        self.users[index(&USERS, user)] = (uid, gid);
    }

    /// The uid and gid of [`TLS_USER`], if the file has it.
    pub fn tls(&self) -> Option<(u32, u32)> {
        self.tls
    }

    pub fn set_tls(&mut self, ids: Option<(u32, u32)>) {
        self.tls = ids;
    }

    pub fn set_group(&mut self, group: &str, gid: u32) {
        self.groups[index(&GROUPS, group)] = gid;
    }
}

fn index(names: &[&str], name: &str) -> usize {
    names
        .iter()
        .position(|n| *n == name)
        .expect("a qmail user or group name")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut ids = Ids::single(1000, 1000);
        ids.set_user("qmailq", 7795, 7791);
        ids.set_group("qmail", 7791);
        let again = Ids::parse(ids.format().as_bytes()).unwrap();
        assert_eq!(again, ids);
        assert_eq!(again.uid("qmailq"), 7795);
        assert_eq!(again.user_gid("qmailq"), 7791);
        assert_eq!(again.gid("qmail"), 7791);
        assert_eq!(again.tls(), Some((1000, 1000)));
    }

    #[test]
    fn qmailtls_is_optional() {
        let mut ids = Ids::single(1, 2);
        ids.set_tls(Some((7798, 7799)));
        let text = ids.format();
        assert!(text.contains("\nqmails:1:2\nqmailtls:7798:7799\nqmail:2\n"), "{text}");
        assert_eq!(Ids::parse(text.as_bytes()).unwrap().tls(), Some((7798, 7799)));
        let old = text.replace("qmailtls:7798:7799\n", "");
        assert_eq!(Ids::parse(old.as_bytes()).unwrap().tls(), None);
        assert!(Ids::parse(text.replace("qmailtls:7798:7799", "qmailtls:x:1").as_bytes()).is_err());
    }

    #[test]
    fn refuses_incomplete_or_malformed() {
        let full = Ids::single(1, 2).format();
        assert!(Ids::parse(full.replace("qmails:1:2\n", "").as_bytes())
            .unwrap_err()
            .contains("qmails"));
        assert!(Ids::parse(full.replace("nofiles:2\n", "").as_bytes())
            .unwrap_err()
            .contains("nofiles"));
        assert!(Ids::parse((full.clone() + "qmailx:1:2\n").as_bytes()).is_err());
        assert!(Ids::parse((full.clone() + "alias:x:2\n").as_bytes()).is_err());
        assert!(Ids::parse((full + "alias:1:2:3\n").as_bytes()).is_err());
    }
}
