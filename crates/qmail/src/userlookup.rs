//! Which user controls a local address: qmail-lspawn's lookup, for qmail-lspawn
//! (which then runs qmail-local as that user) and for qmail-smtpd (which refuses
//! unknown local recipients with exactly the same answer).
//!
//! Two steps, as qmail-lspawn(8) does them:
//!
//! 1. `QMAILHOME/users/cdb` (qmail-users(5), built by qmail-newu): the exact record
//!    `!local\0` first, then `+` prefixes, longest first, tried only when their last
//!    character is one of the "wildchars" the empty key lists (or the prefix is
//!    empty, the catch-all `+:` line). A missing cdb is skipped; any other error, or
//!    a cdb without the empty key, is trouble (a deferral, never "not there").
//! 2. qmail-getpw(8)'s rules on the passwd file, read as a file (no NSS in a static
//!    binary): the whole local part, then each prefix that ends before a `-`,
//!    longest first, lowercased, shorter than 32 bytes; an account matches if its
//!    uid is not 0 and its home directory exists and is owned by it. No match: the
//!    user `alias`, dash `-`, extension the whole local part.
//!
//! The home directory's owner is checked with the caller's own credentials, as
//! qmail-getpw did running as qmailp: run step 2 unprivileged (qmail-lspawn does it
//! in a child as qmailp, qmail-smtpd runs as qmaild), so both see the same answer.

use crate::cdb::Cdb;
use std::io::{self, BufRead};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// qmail's conf-break: what separates a user name from its extension.
pub const BREAK: u8 = b'-';
/// The user who controls every address no real user owns (qmail's auto_usera).
pub const ALIAS: &[u8] = b"alias";
/// qmail-getpw's GETPW_USERLEN: a candidate user name is shorter than this.
const USERLEN: usize = 32;
/// The users database, relative to QMAILHOME.
pub const USERS_CDB: &str = "users/cdb";
/// The compiled-in passwd file.
pub const PASSWD: &str = "/etc/passwd";

/// The user an address belongs to: qmail-getpw's six output fields, which become
/// qmail-local's `user homedir dash ext` operands and the uid/gid it runs as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub name: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
    pub home: Vec<u8>,
    /// `""` for the user's own address, `"-"` for an extension or alias address.
    pub dash: Vec<u8>,
    /// Selects `.qmail` + dash + ext, in the address's original case.
    pub ext: Vec<u8>,
}

/// Why no user could be found: each is a deferral, and maps to the exit code
/// (qmail's qlx.h) that qmail-lspawn's report table turns into its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A users/cdb record without its six fields (QLX_USAGE, 112).
    Malformed,
    /// A home directory could not be checked for a temporary reason (QLX_NFS, 115).
    Nfs,
    /// No address matched and there is no `alias` account (QLX_NOALIAS, 116).
    NoAlias,
    /// users/cdb cannot be read, or has no wildchars record (QLX_CDB, 117).
    Cdb,
    /// The passwd file cannot be read (QLX_SYS, 118).
    Sys,
}

impl Failure {
    /// The exit code qmail-lspawn's delivery child ends with.
    pub fn code(self) -> i32 {
        match self {
            Failure::Malformed => 112,
            Failure::Nfs => 115,
            Failure::NoAlias => 116,
            Failure::Cdb => 117,
            Failure::Sys => 118,
        }
    }
}

/// scan_ulong as qmail-lspawn uses it on a record's uid and gid: the leading
/// digits, nothing if there are none (so a damaged uid becomes 0, which qmail-lspawn
/// refuses to deliver as: a deferral, never a wrong user).
fn leading_number(b: &[u8]) -> u32 {
    b.iter()
        .take_while(|c| c.is_ascii_digit())
        .fold(0u64, |n, &c| n.wrapping_mul(10).wrapping_add(u64::from(c - b'0'))) as u32
}

impl User {
    /// qmail-getpw's output: the six fields, each followed by NUL.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for f in [
            &self.name[..],
            self.uid.to_string().as_bytes(),
            self.gid.to_string().as_bytes(),
            &self.home,
            &self.dash,
            &self.ext,
        ] {
            out.extend_from_slice(f);
            out.push(0);
        }
        out
    }

    /// Six NUL-terminated fields, as qmail-lspawn reads them from qmail-getpw or
    /// from a users/cdb record (with the NUL it appends); `None` when one is missing.
    pub fn decode(b: &[u8]) -> Option<User> {
        let mut f = b.split(|&c| c == 0);
        let mut next = || f.next().map(<[u8]>::to_vec);
        let user = User {
            name: next()?,
            uid: leading_number(&next()?),
            gid: leading_number(&next()?),
            home: next()?,
            dash: next()?,
            ext: next()?,
        };
        // The sixth field must have had its NUL too.
        next()?;
        Some(user)
    }
}

/// Step 1 on an open users/cdb: `Ok(None)` when no record matches.
pub fn from_cdb(db: &Cdb, local: &[u8]) -> Result<Option<User>, Failure> {
    let get = |k: &[u8]| db.get(k).map_err(|_| Failure::Cdb);
    let wildchars = get(b"")?.ok_or(Failure::Cdb)?;
    let mut key = Vec::with_capacity(local.len() + 2);
    key.push(b'!');
    key.extend(local.iter().map(u8::to_ascii_lowercase));
    key.push(0);
    // The exact key (with its NUL), then every prefix of `!local`, longest first.
    let mut i = key.len();
    let mut wild = false;
    while i > 0 {
        if !wild || i == 1 || wildchars.contains(&key[i - 1]) {
            if let Some(mut data) = get(&key[..i])? {
                if wild {
                    data.extend_from_slice(&local[i - 1..]);
                }
                data.push(0);
                return User::decode(&data).map(Some).ok_or(Failure::Malformed);
            }
        }
        i -= 1;
        wild = true;
    }
    Ok(None)
}

/// Step 1: `QMAILHOME/users/cdb`, if it exists.
pub fn from_users_cdb(home: &Path, local: &[u8]) -> Result<Option<User>, Failure> {
    match Cdb::open(&home.join(USERS_CDB)) {
        Ok(Some(db)) => from_cdb(&db, local),
        Ok(None) => Ok(None),
        Err(_) => Err(Failure::Cdb),
    }
}

/// The passwd file step 2 reads: /etc/passwd, or `$QMAIL_PASSWD` for tests. The
/// variable is honoured only when the process is not setuid or setgid (AT_SECURE),
/// so no caller can point a privileged program at a passwd file of its choosing;
/// qmail-lspawn runs as root but is started by qmail-start, not by a user, so its
/// environment is the admin's.
pub fn passwd_path() -> PathBuf {
    if !crate::home::secure() {
        if let Some(p) = std::env::var_os("QMAIL_PASSWD").filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
    }
    PathBuf::from(PASSWD)
}

/// One valid passwd(5) line for `name`, as getpwnam reads a files database: lines
/// that do not have seven fields with numeric ids are skipped.
fn parse_line(line: &[u8]) -> Option<User> {
    let f: Vec<&[u8]> = line.split(|&b| b == b':').collect();
    if f.len() != 7 || f[0].is_empty() {
        return None;
    }
    let num = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u32>().ok();
    Some(User {
        name: f[0].to_vec(),
        uid: num(f[2])?,
        gid: num(f[3])?,
        home: f[5].to_vec(),
        dash: Vec::new(),
        ext: Vec::new(),
    })
}

/// The owner of a home directory, as stat(2) sees it.
fn stat_owner(home: &[u8]) -> io::Result<u32> {
    std::fs::metadata(std::ffi::OsStr::from_bytes(home)).map(|m| m.uid())
}

/// Step 2, qmail-getpw's rules, on passwd text read from `passwd` in one pass (a
/// large passwd file is never held in memory).
pub fn from_passwd(passwd: impl BufRead, local: &[u8]) -> Result<User, Failure> {
    from_passwd_with(passwd, local, stat_owner)
}

fn from_passwd_with(
    mut passwd: impl BufRead,
    local: &[u8],
    owner: impl Fn(&[u8]) -> io::Result<u32>,
) -> Result<User, Failure> {
    // The candidates, longest first: (end of the user name in `local`, lowercased name).
    let candidates: Vec<(usize, Vec<u8>)> = (0..=local.len())
        .rev()
        .filter(|&i| i < USERLEN && (i == local.len() || local[i] == BREAK))
        .map(|i| (i, local[..i].to_ascii_lowercase()))
        .collect();
    // The first entry for each candidate name and for alias, in one pass.
    let mut found: Vec<Option<User>> = vec![None; candidates.len()];
    let mut alias = None;
    let mut line = Vec::new();
    loop {
        line.clear();
        match passwd.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => {}
            Err(_) => return Err(Failure::Sys),
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let Some(pw) = parse_line(&line) else { continue };
        for (slot, (_, name)) in found.iter_mut().zip(&candidates) {
            if slot.is_none() && pw.name == *name {
                *slot = Some(pw.clone());
            }
        }
        if alias.is_none() && pw.name == ALIAS {
            alias = Some(pw);
        }
    }
    for ((end, _), pw) in candidates.iter().zip(found) {
        let Some(mut pw) = pw.filter(|pw| pw.uid != 0) else {
            continue;
        };
        match owner(&pw.home) {
            Ok(uid) if uid == pw.uid => {
                if *end < local.len() {
                    pw.dash = b"-".to_vec();
                    pw.ext = local[end + 1..].to_vec();
                }
                return Ok(pw);
            }
            Ok(_) => {}
            Err(e) if e.raw_os_error().is_some_and(crate::errstr::is_temporary) => return Err(Failure::Nfs),
            Err(_) => {}
        }
    }
    let mut pw = alias.ok_or(Failure::NoAlias)?;
    pw.dash = b"-".to_vec();
    pw.ext = local.to_vec();
    Ok(pw)
}

/// Step 2 on the file [`passwd_path`] names; a passwd file that does not exist has
/// no accounts (so only `alias` could have matched, and it is missing).
pub fn from_passwd_file(path: &Path, local: &[u8]) -> Result<User, Failure> {
    match std::fs::File::open(path) {
        Ok(f) => from_passwd(io::BufReader::new(f), local),
        Err(e) if e.kind() == io::ErrorKind::NotFound => from_passwd(&b""[..], local),
        Err(_) => Err(Failure::Sys),
    }
}

/// The whole lookup for a non-empty local part (an empty one is qmail's trash
/// address, which needs no user): users/cdb under `home`, then the passwd file.
/// A user with uid 0 may come back; qmail-lspawn defers delivering to it.
pub fn lookup(home: &Path, local: &[u8]) -> Result<User, Failure> {
    lookup_in(home, &passwd_path(), local)
}

/// [`lookup`] with the passwd file named (read once at start by a caller that
/// looks up many addresses).
pub fn lookup_in(home: &Path, passwd: &Path, local: &[u8]) -> Result<User, Failure> {
    if let Some(u) = from_users_cdb(home, local)? {
        return Ok(u);
    }
    from_passwd_file(passwd, local)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, uid: u32, gid: u32, home: &str, dash: &str, ext: &str) -> User {
        User {
            name: name.into(),
            uid,
            gid,
            home: home.into(),
            dash: dash.into(),
            ext: ext.into(),
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rqmail-userlookup-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// What qmail-newu writes for an assign file (qmail-users(5)).
    fn newu(path: &Path, assign: &[&str]) {
        let mut w = cdb2::CDBWriter::create(path).unwrap();
        let mut wild = Vec::new();
        for line in assign {
            let f: Vec<&str> = line[1..].split(':').collect();
            let data = [f[1], f[2], f[3], f[4], f[5], f[6]].join("\0");
            let mut key = format!("!{}", f[0].to_ascii_lowercase()).into_bytes();
            if line.starts_with('+') {
                if let Some(&c) = key.last().filter(|_| key.len() > 1) {
                    if !wild.contains(&c) {
                        wild.push(c);
                    }
                }
            } else {
                key.push(0);
            }
            w.add(&key, data.as_bytes()).unwrap();
        }
        w.add(b"", &wild).unwrap();
        w.finish().unwrap();
    }

    #[test]
    fn users_cdb_exact_then_longest_wildcard() {
        let d = tmp("cdb");
        std::fs::create_dir(d.join("users")).unwrap();
        newu(
            &d.join(USERS_CDB),
            &[
                "=Joe.Shmoe:joe:503:78:/home/joe:::",
                "+joe-:joe:507:100:/home/joe:-::",
                "+joe-list-:joe:507:100:/home/joe:-:list-:",
                "=joe-exact:bob:9:9:/home/bob:-:x:",
                "+:alias:7790:7781:/var/qmail/alias:-::",
            ],
        );
        let at = |l: &str| from_users_cdb(&d, l.as_bytes()).unwrap().unwrap();
        assert_eq!(at("JOE.shmoe"), user("joe", 503, 78, "/home/joe", "", ""));
        assert_eq!(at("joe-Foo"), user("joe", 507, 100, "/home/joe", "-", "Foo"));
        assert_eq!(at("joe-"), user("joe", 507, 100, "/home/joe", "-", ""));
        assert_eq!(
            at("Joe-List-Owner"),
            user("joe", 507, 100, "/home/joe", "-", "list-Owner")
        );
        assert_eq!(at("joe-exact"), user("bob", 9, 9, "/home/bob", "-", "x"));
        // The catch-all, with the whole local part as extension.
        assert_eq!(
            at("Nobody"),
            user("alias", 7790, 7781, "/var/qmail/alias", "-", "Nobody")
        );
        // "joe" is neither an exact key nor under "joe-": the catch-all again.
        assert_eq!(at("joe").name, b"alias");
        assert_eq!(from_users_cdb(&tmp("none"), b"joe"), Ok(None));
    }

    #[test]
    fn users_cdb_wildchars_gate_the_prefixes() {
        let d = tmp("wild");
        std::fs::create_dir(d.join("users")).unwrap();
        newu(&d.join(USERS_CDB), &["+ab:u:1:1:/h:-::", "=x:u:1:1:/h:::"]);
        assert_eq!(from_users_cdb(&d, b"abc").unwrap().unwrap().ext, b"c");
        assert_eq!(from_users_cdb(&d, b"zz"), Ok(None));
        // A cdb whose empty key does not list 'b' never tries the "+ab" record.
        let mut w = cdb2::CDBWriter::create(d.join(USERS_CDB)).unwrap();
        w.add(b"!ab", b"u\x001\x001\x00/h\x00-\x00").unwrap();
        w.add(b"", b"-").unwrap();
        w.finish().unwrap();
        assert_eq!(from_users_cdb(&d, b"abc"), Ok(None));
        // No wildchars record at all: unreadable, even for an exact hit.
        let mut w = cdb2::CDBWriter::create(d.join(USERS_CDB)).unwrap();
        w.add(b"!x\0", b"u\x001\x001\x00/h\x00\x00").unwrap();
        w.finish().unwrap();
        assert_eq!(from_users_cdb(&d, b"x"), Err(Failure::Cdb));
        // A record short of fields.
        let mut w = cdb2::CDBWriter::create(d.join(USERS_CDB)).unwrap();
        w.add(b"!x\0", b"u\x001\x001").unwrap();
        w.add(b"", b"").unwrap();
        w.finish().unwrap();
        assert_eq!(from_users_cdb(&d, b"x"), Err(Failure::Malformed));
        // Damage is trouble, never "not there".
        std::fs::write(d.join(USERS_CDB), b"short").unwrap();
        assert_eq!(from_users_cdb(&d, b"x"), Err(Failure::Cdb));
        std::fs::remove_file(d.join(USERS_CDB)).unwrap();
        std::fs::create_dir(d.join(USERS_CDB)).unwrap();
        assert_eq!(from_users_cdb(&d, b"x"), Err(Failure::Cdb));
    }

    const PASSWD: &[u8] = b"root:x:0:0:root:/root:/bin/sh\n\
        broken:x:12\n\
        joe:x:1001:1002:Joe:/home/joe:/bin/sh\n\
        joe-foo:x:1003:1003::/home/joefoo:/bin/sh\n\
        Mixed:x:1004:1004::/home/mixed:/bin/sh\n\
        stranger:x:1005:1005::/home/notmine:/bin/sh\n\
        nohome:x:1006:1006::/nonexistent:/bin/sh\n\
        nfs:x:1007:1007::/nfs/stale:/bin/sh\n\
        broken:x:13:13::/home/broken:/bin/sh\n\
        joe:x:1:1::/elsewhere:/bin/sh\n\
        alias:x:7790:7781::/var/qmail/alias:/bin/false";

    /// Homes are owned by the uid named in the passwd line, except /home/notmine.
    fn owner(home: &[u8]) -> io::Result<u32> {
        Ok(match home {
            b"/home/joe" => 1001,
            b"/home/joefoo" => 1003,
            b"/home/mixed" => 1004,
            b"/home/notmine" => 1,
            b"/home/broken" => 13,
            b"/root" => 0,
            b"/nfs/stale" => return Err(io::Error::from_raw_os_error(libc::ESTALE)),
            _ => return Err(io::Error::from_raw_os_error(libc::ENOENT)),
        })
    }

    fn pw(local: &str) -> Result<User, Failure> {
        from_passwd_with(PASSWD, local.as_bytes(), owner)
    }

    #[test]
    fn getpw_rules() {
        assert_eq!(pw("joe"), Ok(user("joe", 1001, 1002, "/home/joe", "", "")));
        assert_eq!(pw("JOE"), Ok(user("joe", 1001, 1002, "/home/joe", "", "")));
        assert_eq!(
            pw("Joe-Bar-Baz"),
            Ok(user("joe", 1001, 1002, "/home/joe", "-", "Bar-Baz"))
        );
        assert_eq!(pw("joe-"), Ok(user("joe", 1001, 1002, "/home/joe", "-", "")));
        // The longest candidate wins.
        assert_eq!(
            pw("joe-foo-x"),
            Ok(user("joe-foo", 1003, 1003, "/home/joefoo", "-", "x"))
        );
        // Lowercased before the lookup: an account with capitals never matches.
        let alias = |ext: &str| Ok(user("alias", 7790, 7781, "/var/qmail/alias", "-", ext));
        assert_eq!(pw("Mixed"), alias("Mixed"));
        // uid 0, a home owned by someone else, a missing home: not that user.
        assert_eq!(pw("root"), alias("root"));
        assert_eq!(pw("stranger-x"), alias("stranger-x"));
        assert_eq!(pw("nohome"), alias("nohome"));
        assert_eq!(pw("postmaster"), alias("postmaster"));
        // getpwnam skips a malformed line and finds the next entry of that name.
        assert_eq!(pw("broken"), Ok(user("broken", 13, 13, "/home/broken", "", "")));
        // A home that cannot be checked right now defers.
        assert_eq!(pw("nfs"), Err(Failure::Nfs));
        // Only names shorter than 32 bytes are tried.
        let long = format!("joe{}", "x".repeat(40));
        assert_eq!(pw(&long), alias(&long));
        let long = format!("joe-{}", "x".repeat(40));
        assert_eq!(pw(&long), Ok(user("joe", 1001, 1002, "/home/joe", "-", &long[4..])));
        // A separator inside a name cannot end a field.
        assert_eq!(pw("joe:x:1"), alias("joe:x:1"));
        assert_eq!(pw("joe\nalias"), alias("joe\nalias"));
        // No alias account.
        let no_alias: &[u8] = b"joe:x:1001:1002::/home/joe:/bin/sh\n";
        assert_eq!(from_passwd_with(no_alias, b"nobody", owner), Err(Failure::NoAlias));
    }

    #[test]
    fn real_stat_and_files() {
        let d = tmp("stat");
        let home = d.join("home");
        std::fs::create_dir(&home).unwrap();
        // uid 0 is never a delivery user: as root, give the home to someone else.
        // SAFETY: getuid has no preconditions.
        let mut me = unsafe { libc::getuid() };
        if me == 0 {
            me = 4242;
            std::os::unix::fs::chown(&home, Some(me), None).unwrap();
        }
        let passwd = d.join("passwd");
        std::fs::write(
            &passwd,
            format!("me:x:{me}:7::{}:/bin/sh\nalias:x:5:5::/a:/bin/sh\n", home.display()),
        )
        .unwrap();
        assert_eq!(from_passwd_file(&passwd, b"me-x").unwrap().uid, me);
        assert_eq!(from_passwd_file(&d.join("missing"), b"me"), Err(Failure::NoAlias));
        assert_eq!(from_passwd_file(&d, b"me"), Err(Failure::Sys));
    }

    #[test]
    fn encode_decode_and_codes() {
        let u = user("joe", 1001, 1002, "/home/joe", "-", "ext");
        assert_eq!(u.encode(), b"joe\x001001\x001002\x00/home/joe\x00-\x00ext\x00");
        assert_eq!(User::decode(&u.encode()), Some(u));
        assert_eq!(User::decode(b"joe\x001001\x001002\x00/home/joe\x00-\x00ext"), None);
        assert_eq!(
            User::decode(b"joe\x00x\x0012y\x00/h\x00\x00\x00").map(|u| (u.uid, u.gid)),
            Some((0, 12))
        );
        let codes: Vec<i32> = [
            Failure::Malformed,
            Failure::Nfs,
            Failure::NoAlias,
            Failure::Cdb,
            Failure::Sys,
        ]
        .map(Failure::code)
        .into();
        assert_eq!(codes, [112, 115, 116, 117, 118]);
        use crate::errstr::is_temporary;
        assert!(is_temporary(libc::ESTALE) && !is_temporary(libc::ENOENT) && !is_temporary(libc::EACCES));
    }
}
