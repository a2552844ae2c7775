//! Who may use the privilege of a setuid run (make install leaves the program
//! setuid root so that qmail-smtpd, as qmaild, can check logins against root-only
//! files).
//!
//! Any local user can start a setuid program, and a verifier that answers anyone is
//! a password oracle for every account, root's included. So a setuid run serves only
//! the callers that need it, decided from the real ids before fd 3's login is looked
//! up anywhere (nothing read, no hash computed, no delay that killing the process
//! could cut short):
//!
//! - real uid 0, and qmail's eight users in `control/ids` (qmaild is the one that
//!   runs qmail-smtpd's AUTH; not qmailtls, whose engine reads hostile bytes and
//!   needs no password checked): everything, challenge-response proofs included,
//!   because these callers issued the challenge themselves;
//! - members (real or supplementary gid) of the group named in
//!   `control/checkpwgroup`, by name (from /etc/group) or number: plain passwords
//!   only. A CRAM-MD5 or APOP proof would let such a caller replay a sniffed exchange
//!   with a challenge of its choosing;
//! - anyone else: refused.
//!
//! Both files are read from the compiled-in home (qmail::home in a setuid run). A
//! missing file names nobody; any other error reading either is temporary.

use qmail::ids::{Ids, USERS};
use std::io;
use std::path::Path;

/// Where the admin names the group, relative to QMAILHOME.
pub const GROUP_FILE: &str = "control/checkpwgroup";
/// Group names in `control/checkpwgroup` are looked up here (a file: no NSS).
pub const GROUP_DB: &str = "/etc/group";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Passwords and challenge-response proofs.
    Full,
    /// Passwords only.
    Passwords,
}

/// The real ids of the process that started this one.
pub struct Caller {
    pub uid: u32,
    pub gids: Vec<u32>,
}

impl Caller {
    pub fn real() -> Caller {
        use nix::unistd::{getgid, getgroups, getuid};
        let mut gids = vec![getgid().as_raw()];
        gids.extend(getgroups().unwrap_or_default().iter().map(|g| g.as_raw()));
        Caller {
            uid: getuid().as_raw(),
            gids,
        }
    }
}

/// How far `caller` is trusted; `None`: refused. `Err` (a text naming the file) when
/// a file that decides it cannot be read.
pub fn of(caller: &Caller, home: &Path, group_db: &Path) -> Result<Option<Trust>, String> {
    if caller.uid == 0 {
        return Ok(Some(Trust::Full));
    }
    let ids = match Ids::load(home) {
        Ok(ids) => Some(ids),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(format!(
                "unable to read {}: {}",
                home.join(qmail::ids::FILE).display(),
                why(&e)
            ))
        }
    };
    let group = admin_group(home, group_db)?;
    if ids.is_some_and(|ids| USERS.iter().any(|u| ids.uid(u) == caller.uid)) {
        return Ok(Some(Trust::Full));
    }
    if group.is_some_and(|g| caller.gids.contains(&g)) {
        return Ok(Some(Trust::Passwords));
    }
    Ok(None)
}

fn why(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::InvalidData => e.to_string(),
        _ => qmail::errstr::io_str(e).to_string(),
    }
}

/// The gid in `control/checkpwgroup`, if the file exists.
fn admin_group(home: &Path, group_db: &Path) -> Result<Option<u32>, String> {
    let path = home.join(GROUP_FILE);
    let line =
        qmail::control::read_line(&path).map_err(|e| format!("unable to read {}: {}", path.display(), why(&e)))?;
    let Some(line) = line else {
        return Ok(None);
    };
    if line.is_empty() {
        return Err(format!("unable to parse {}: no group", path.display()));
    }
    if line.iter().all(u8::is_ascii_digit) {
        return std::str::from_utf8(&line)
            .ok()
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| format!("unable to parse {}: bad gid", path.display()));
    }
    let groups = std::fs::read(group_db).map_err(|e| format!("unable to read {}: {}", group_db.display(), why(&e)))?;
    qmail::passwd::group_gid(&groups, &line).map(Some).ok_or_else(|| {
        format!(
            "unable to parse {}: no group {} in {}",
            path.display(),
            qmail::log::field(&line, 100, b""),
            group_db.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rqmail-trust-{name}-{}", std::process::id()));
        std::fs::create_dir_all(d.join("control")).unwrap();
        d
    }

    #[test]
    fn root_qmail_users_and_the_admin_group() {
        let h = home("who");
        let db = h.join("group");
        std::fs::write(&db, "mailauth:x:7788:\n").unwrap();
        let c = |uid: u32, gids: &[u32]| Caller {
            uid,
            gids: gids.to_vec(),
        };
        let mut ids = Ids::single(7795, 7780);
        ids.set_user("qmaild", 7791, 7781);
        ids.set_user("root", 0, 0);
        std::fs::write(h.join(qmail::ids::FILE), ids.format()).unwrap();
        let of = |caller: &Caller| of(caller, &h, &db);
        assert_eq!(of(&c(0, &[0])), Ok(Some(Trust::Full)));
        assert_eq!(of(&c(7791, &[7781])), Ok(Some(Trust::Full)));
        assert_eq!(of(&c(7795, &[7780])), Ok(Some(Trust::Full)));
        assert_eq!(of(&c(1000, &[1000, 7788])), Ok(None));
        for line in ["7788\n", "mailauth\n"] {
            std::fs::write(h.join(GROUP_FILE), line).unwrap();
            assert_eq!(of(&c(1000, &[1000, 7788])), Ok(Some(Trust::Passwords)));
            assert_eq!(of(&c(1000, &[7788])), Ok(Some(Trust::Passwords)));
            assert_eq!(of(&c(1000, &[1000])), Ok(None));
        }
        for (line, err) in [
            ("nosuch\n", "no group nosuch"),
            ("\n", "no group"),
            ("99999999999\n", "bad gid"),
        ] {
            std::fs::write(h.join(GROUP_FILE), line).unwrap();
            assert!(of(&c(7791, &[7781])).unwrap_err().contains(err), "{line:?}");
        }
        std::fs::remove_file(h.join(GROUP_FILE)).unwrap();
        std::fs::create_dir(h.join(GROUP_FILE)).unwrap();
        assert!(of(&c(7791, &[7781])).unwrap_err().contains("checkpwgroup"));
        std::fs::remove_dir(h.join(GROUP_FILE)).unwrap();
        std::fs::write(h.join(qmail::ids::FILE), "qmaild:x\n").unwrap();
        assert!(of(&c(7791, &[7781])).unwrap_err().contains("control/ids"));
        std::fs::remove_file(h.join(qmail::ids::FILE)).unwrap();
        assert_eq!(of(&c(7791, &[7781])), Ok(None));
        assert_eq!(of(&c(0, &[0])), Ok(Some(Trust::Full)));
        std::fs::remove_dir_all(&h).unwrap();
    }
}
