//! rqmail's user database: one CDB (by default `QMAILHOME/users/checkpassword.cdb`)
//! of virtual users, written only by `checkpassword-users`.
//!
//! Key: the login as [`crate::login::Login::key`] makes it (`user@domain`, lower case).
//! Value: `HASH:UID:GID:HOME:SECRET`, readable with `cdb -d`. SECRET is empty unless the
//! admin stored the clear password for CRAM-MD5 and APOP; it is the last field, taken
//! whole, so it may hold any byte but NUL. The file is mode 0600: hashes and secrets.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub login: Vec<u8>,
    pub hash: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub home: Vec<u8>,
    pub secret: Option<Vec<u8>>,
}

impl User {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.hash.clone();
        v.extend_from_slice(format!(":{}:{}:", self.uid, self.gid).as_bytes());
        v.extend_from_slice(&self.home);
        v.push(b':');
        v.extend_from_slice(self.secret.as_deref().unwrap_or(b""));
        v
    }

    pub fn decode(login: &[u8], value: &[u8]) -> Option<User> {
        let f: Vec<&[u8]> = value.splitn(5, |&b| b == b':').collect();
        let [hash, uid, gid, home, secret] = f[..] else {
            return None;
        };
        let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u32>().ok();
        Some(User {
            login: login.to_vec(),
            hash: hash.to_vec(),
            uid: num(uid)?,
            gid: num(gid)?,
            home: home.to_vec(),
            secret: (!secret.is_empty()).then(|| secret.to_vec()),
        })
    }
}

/// The user `key` in the CDB at `path`. A missing file holds no users; a damaged
/// one (or a damaged record) is an error, so the caller answers "try again".
pub fn lookup(path: &Path, key: &[u8]) -> io::Result<Option<User>> {
    let Some(db) = qmail::cdb::Cdb::open(path)? else {
        return Ok(None);
    };
    match db.get(key)? {
        None => Ok(None),
        Some(value) => User::decode(key, &value)
            .map(Some)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed record")),
    }
}

/// Every user, in key order. A missing file holds no users.
pub fn load(path: &Path) -> io::Result<Vec<User>> {
    let Some(db) = qmail::cdb::Cdb::open(path)? else {
        return Ok(Vec::new());
    };
    let mut users = Vec::new();
    for (k, v) in db.records()? {
        users.push(User::decode(&k, &v).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("malformed record for {}", qmail::log::field(&k, 100, b"")),
            )
        })?);
    }
    users.sort_by(|a, b| a.login.cmp(&b.login));
    Ok(users)
}

/// Replaces the CDB at `path` with `users`: a new file beside it, synced, renamed over
/// the old one, and the directory synced. A reader sees the old or the new file whole.
pub fn store(path: &Path, users: &[User]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let result = (|| {
        let mut db = cdb2::CDBMake::new(file)?;
        for u in users {
            db.add(&u.login, &u.encode())?;
        }
        db.finish()?;
        File::open(&tmp)?.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Serialises changes: an exclusive lock on `path.lock`, held while the guard lives.
pub fn lock(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path.with_extension("lock"))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&f), libc::LOCK_EX) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(f)
}

/// Writes `users` as `checkpassword-users list` shows them.
pub fn list(users: &[User], mut out: impl Write) -> io::Result<()> {
    for u in users {
        out.write_all(&u.login)?;
        out.write_all(format!(" {} {} ", u.uid, u.gid).as_bytes())?;
        out.write_all(&u.home)?;
        let scheme = u.hash.split(|&b| b == b'$').nth(1).unwrap_or(b"?");
        out.write_all(format!(" ${}$", String::from_utf8_lossy(scheme)).as_bytes())?;
        out.write_all(if u.secret.is_some() { b" cram\n" } else { b"\n" })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(login: &str, secret: Option<&str>) -> User {
        User {
            login: login.into(),
            hash: b"$6$salt$hash".to_vec(),
            uid: 7790,
            gid: 7791,
            home: b"/home/vmail/example.com/alice".to_vec(),
            secret: secret.map(|s| s.as_bytes().to_vec()),
        }
    }

    #[test]
    fn records_round_trip() {
        for u in [user("alice@example.com", None), user("bob", Some("a:b:c"))] {
            assert_eq!(User::decode(&u.login, &u.encode()), Some(u.clone()));
        }
        assert_eq!(
            user("a", Some("x:y")).encode(),
            b"$6$salt$hash:7790:7791:/home/vmail/example.com/alice:x:y"
        );
        for bad in [&b""[..], b"h:1:2:/h", b"h:x:2:/h:", b"h:1:-2:/h:"] {
            assert_eq!(User::decode(b"k", bad), None, "{bad:?}");
        }
    }

    #[test]
    fn store_lookup_load() {
        let dir = std::env::temp_dir().join(format!("rqmail-userdb-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("users.cdb");
        assert_eq!(lookup(&path, b"alice@example.com").unwrap(), None);
        assert!(load(&path).unwrap().is_empty());
        let users = [user("alice@example.com", Some("s")), user("bob", None)];
        let _guard = lock(&path).unwrap();
        store(&path, &users).unwrap();
        assert_eq!(lookup(&path, b"bob").unwrap(), Some(users[1].clone()));
        assert_eq!(lookup(&path, b"carol").unwrap(), None);
        assert_eq!(load(&path).unwrap(), users);
        assert!(!path.with_extension("tmp").exists());
        let mut out = Vec::new();
        list(&users, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "alice@example.com 7790 7791 /home/vmail/example.com/alice $6$ cram\nbob 7790 7791 /home/vmail/example.com/alice $6$\n"
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
