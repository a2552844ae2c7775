//! Where accounts come from, in the admin's order: `control/checkpwsources`, one source
//! per line; without the file, rqmail's database and then the system accounts.
//!
//! ```text
//! users [FILE.cdb]            rqmail's database (default QMAILHOME/users/checkpassword.cdb)
//! system [PASSWD [SHADOW]]    /etc/passwd and /etc/shadow, for logins without a domain
//! ```
//!
//! The first source that knows a login decides; a wrong password there is not tried
//! against the next one. A setuid run reads the file under the compiled-in home only
//! (qmail::home), so a caller cannot point it at a passwd file of their own.

use crate::login::Login;
use crate::userdb;
use qmail::passwd::{Passwd, Shadow};
use std::io;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Users(PathBuf),
    System { passwd: PathBuf, shadow: PathBuf },
}

/// The configured sources, or a line that makes no sense.
pub fn configured(home: &Path) -> Result<Vec<Source>, String> {
    let path = home.join("control/checkpwsources");
    let text = match std::fs::read(&path) {
        Ok(t) => String::from_utf8(t).map_err(|_| format!("unable to parse {}: not UTF-8", path.display()))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => "users\nsystem\n".to_string(),
        Err(e) => {
            return Err(format!(
                "unable to read {}: {}",
                path.display(),
                qmail::errstr::io_str(&e)
            ))
        }
    };
    let mut sources = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        sources.push(match words[..] {
            ["users"] => Source::Users(home.join("users/checkpassword.cdb")),
            ["users", db] => Source::Users(db.into()),
            ["system", ref files @ ..] if files.len() <= 2 => Source::System {
                passwd: files.first().unwrap_or(&"/etc/passwd").into(),
                shadow: files.get(1).unwrap_or(&"/etc/shadow").into(),
            },
            _ => return Err(format!("unable to parse {}: {line}", path.display())),
        });
    }
    Ok(sources)
}

/// An account that may log in, from whichever source knew it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// `USER` for the program: the system name, or the database key.
    pub name: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub home: Vec<u8>,
    /// The system account's shell; `None` for virtual users.
    pub shell: Option<Vec<u8>>,
    pub hash: Vec<u8>,
    /// The clear secret for CRAM-MD5 and APOP, if the admin stored one.
    pub secret: Option<Vec<u8>>,
    /// Why no password may log in (shadow's ageing: expired, must change, inactive).
    pub refused: Option<&'static str>,
}

/// Looks `login` up in each source in turn. `Err` is a temporary failure (a source
/// that exists but cannot be read), with a text that names no password.
pub fn find(sources: &[Source], login: &Login) -> Result<Option<Account>, String> {
    for source in sources {
        let found = match source {
            Source::Users(db) => userdb::lookup(db, &login.key())
                .map_err(|e| format!("unable to read {}: {}", db.display(), qmail::errstr::io_str(&e)))?
                .map(|u| Account {
                    name: u.login,
                    uid: u.uid,
                    gid: u.gid,
                    home: u.home,
                    shell: None,
                    hash: u.hash,
                    secret: u.secret,
                    refused: None,
                }),
            Source::System { passwd, shadow } if login.domain.is_none() => system(passwd, shadow, &login.typed)?,
            Source::System { .. } => None,
        };
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

fn read(path: &Path) -> Result<Option<Vec<u8>>, String> {
    match std::fs::read(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "unable to read {}: {}",
            path.display(),
            qmail::errstr::io_str(&e)
        )),
    }
}

/// A system account. The hash is in shadow when passwd says `x`.
fn system(passwd: &Path, shadow: &Path, name: &[u8]) -> Result<Option<Account>, String> {
    let Some(pw) = read(passwd)?.and_then(|t| Passwd::find(&t, name)) else {
        return Ok(None);
    };
    // A passwd line without `x` has no shadow entry and so no ageing, as for PAM.
    let (hash, refused) = if pw.passwd == b"x" {
        let today = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / 86400);
        match read(shadow)?.and_then(|t| Shadow::find(&t, name)) {
            Some(sp) => (sp.hash.clone(), sp.ageing(today as i64).refusal()),
            None => (Vec::new(), None),
        }
    } else {
        (pw.passwd.clone(), None)
    };
    Ok(Some(Account {
        name: pw.name,
        uid: pw.uid,
        gid: pw.gid,
        home: pw.dir,
        shell: Some(pw.shell),
        hash,
        secret: None,
        refused,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rqmail-sources-{name}-{}", std::process::id()));
        std::fs::create_dir_all(d.join("control")).unwrap();
        d
    }

    #[test]
    fn default_and_configured_order() {
        let home = tmp("order");
        let users = Source::Users(home.join("users/checkpassword.cdb"));
        let sys = Source::System {
            passwd: "/etc/passwd".into(),
            shadow: "/etc/shadow".into(),
        };
        assert_eq!(configured(&home).unwrap(), [users.clone(), sys.clone()]);
        std::fs::write(
            home.join("control/checkpwsources"),
            "# only the system\n\nsystem /p\nusers /u.cdb\n",
        )
        .unwrap();
        assert_eq!(
            configured(&home).unwrap(),
            [
                Source::System {
                    passwd: "/p".into(),
                    shadow: "/etc/shadow".into()
                },
                Source::Users("/u.cdb".into())
            ]
        );
        std::fs::write(home.join("control/checkpwsources"), "ldap\n").unwrap();
        assert!(configured(&home).unwrap_err().contains("ldap"));
        std::fs::remove_dir_all(&home).unwrap();
    }

    #[test]
    fn first_source_that_knows_the_login_decides() {
        let home = tmp("find");
        let (p, s) = (home.join("passwd"), home.join("shadow"));
        std::fs::write(
            &p,
            "alice:x:1000:1000::/home/alice:/bin/sh\nbob:$1$x$y:1001:1001::/home/bob:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(&s, "alice:$6$a$b:19000:0:99999:7:::\n").unwrap();
        let db = home.join("users.cdb");
        let u = userdb::User {
            login: b"alice".to_vec(),
            hash: b"$6$virtual$h".to_vec(),
            uid: 5,
            gid: 6,
            home: b"/v/alice".to_vec(),
            secret: None,
        };
        userdb::store(&db, &[u]).unwrap();
        let sys = Source::System { passwd: p, shadow: s };
        let only = [sys.clone()];
        let find1 = |srcs: &[Source], l: &str| find(srcs, &Login::parse(l.as_bytes()).unwrap()).unwrap();
        assert_eq!(find1(&only, "alice").unwrap().hash, b"$6$a$b");
        assert_eq!(
            find1(&[Source::Users(db.clone()), sys.clone()], "alice").unwrap().hash,
            b"$6$virtual$h"
        );
        assert_eq!(
            find1(&[sys.clone(), Source::Users(db.clone())], "alice").unwrap().uid,
            1000
        );
        assert_eq!(find1(&only, "bob").unwrap().hash, b"$1$x$y");
        assert_eq!(find1(&only, "Alice"), None);
        assert_eq!(find1(&only, "alice@example.com"), None);
        std::fs::remove_dir_all(&home).unwrap();
    }
}
