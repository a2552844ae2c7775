//! qmail-mkids: resolves the qmail users and groups once, at install time, into
//! `control/ids`, which every other program reads instead of looking users up (qmail
//! compiled them in at build time, from conf-users and conf-groups).
//!
//! It parses passwd and group files itself (no NSS in static binaries); `-P` and `-G`
//! name other files, so tests resolve test users without touching /etc/passwd.
//! qmailtls, the TLS engine's user, is written with its own primary gid when it
//! exists; without it the file is still complete for qmail's programs (the caller
//! warns: ucspi-tlsd will not run as root).

use qmail::exit::Failure;
use qmail::ids::{Ids, GROUPS, TLS_USER, USERS};
use qmail::passwd::{group_gid, Passwd};
use std::path::Path;

/// The ids of every qmail user and group, or the names that are missing.
pub fn resolve(passwd: &[u8], group: &[u8]) -> Result<Ids, Vec<String>> {
    let mut ids = Ids::single(0, 0);
    let mut missing = Vec::new();
    for user in USERS {
        match Passwd::find(passwd, user.as_bytes()) {
            Some(pw) => ids.set_user(user, pw.uid, pw.gid),
            None => missing.push(format!("user {user}")),
        }
    }
    ids.set_tls(Passwd::find(passwd, TLS_USER.as_bytes()).map(|pw| (pw.uid, pw.gid)));
    for g in GROUPS {
        match group_gid(group, g.as_bytes()) {
            Some(gid) => ids.set_group(g, gid),
            None => missing.push(format!("group {g}")),
        }
    }
    if missing.is_empty() {
        Ok(ids)
    } else {
        Err(missing)
    }
}

/// Where the ids come from: passwd and group files, or one user for everything.
pub enum Source<'a> {
    Files {
        passwd: &'a Path,
        group: &'a Path,
    },
    /// One user owns everything: an instance for `make run` without root.
    Single {
        uid: u32,
        gid: u32,
    },
}

/// The ids from `source`; a user or group that is missing is a permanent failure.
pub fn ids(source: Source) -> Result<Ids, Failure> {
    match source {
        Source::Single { uid, gid } => Ok(Ids::single(uid, gid)),
        Source::Files { passwd, group } => {
            let read = |p: &Path| {
                std::fs::read(p).map_err(|e| Failure::io(format_args!("unable to read {}", p.display()), &e))
            };
            let (passwd, group) = (read(passwd)?, read(group)?);
            resolve(&passwd, &group).map_err(|missing| {
                Failure::perm(format!("missing {}; create them as INSTALL says", missing.join(", ")))
            })
        }
    }
}

/// Writes `home/control/ids` atomically (a temporary file, then rename).
pub fn write(home: &Path, ids: &Ids) -> Result<(), Failure> {
    let path = home.join(qmail::ids::FILE);
    let tmp = path.with_extension("tmp");
    std::fs::create_dir_all(home.join("control"))
        .and_then(|()| std::fs::write(&tmp, ids.format()))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| Failure::io(format_args!("unable to write {}", path.display()), &e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_from_passwd_and_group() {
        let mut passwd = String::from("root:x:0:0:root:/root:/bin/sh\n");
        for (i, u) in USERS.iter().enumerate().filter(|(_, u)| **u != "root") {
            passwd += &format!("{u}:x:{}:7791::/var/qmail:/usr/sbin/nologin\n", 7790 + i);
        }
        let group = "qmail:x:7791:\nnofiles:x:7792:\n";
        let ids = resolve(passwd.as_bytes(), group.as_bytes()).unwrap();
        assert_eq!(ids.uid("qmailq"), 7795);
        assert_eq!(ids.uid("root"), 0);
        assert_eq!(ids.gid("nofiles"), 7792);
        assert_eq!(ids.tls(), None);
        let with_tls = passwd.clone() + "qmailtls:x:7798:7799::/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(
            resolve(with_tls.as_bytes(), group.as_bytes()).unwrap().tls(),
            Some((7798, 7799))
        );
        let err = resolve(passwd.replace("qmails", "qmailz").as_bytes(), b"qmail:x:1:\n").unwrap_err();
        assert_eq!(err, ["user qmails", "group nofiles"]);
    }
}
