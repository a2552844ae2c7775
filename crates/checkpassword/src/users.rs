//! checkpassword-users: the admin's tool for rqmail's user database.
//!
//! ```text
//! checkpassword-users add -u UID [-g GID] -d HOME [-c] [-m] [-y] [-f FILE] LOGIN
//! checkpassword-users passwd [-c | -C] [-y] [-f FILE] LOGIN
//! checkpassword-users del [-f FILE] LOGIN
//! checkpassword-users list [-f FILE]
//! ```
//!
//! The password is the first line of stdin (asked for, without echo, on a terminal).
//! Hashes are sha512-crypt, which verifies in a few milliseconds under the seeds'
//! 2 MB limit; `-y` makes yescrypt (16 MiB, ~50 ms per login). `-c` also stores the
//! clear password, which CRAM-MD5 and APOP need: an opt-in per user, kept across
//! `passwd` (with the new password) until `-C` removes it. `-m` creates HOME and
//! HOME/Maildir owned by the user. Every change rewrites the CDB atomically under a
//! lock, so logins in progress see the old or the new database whole.

use crate::hash::{self, Scheme};
use crate::input::wipe;
use crate::login::Login;
use crate::userdb::{self, User};
use qmail::exit::Failure;
use qmail::getopt::{Getopt, Opt};
use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub const USAGE: &str = "checkpassword-users add -u uid [ -g gid ] -d home [ -c ] [ -m ] [ -y ] [ -f file ] login\n\
                         \tcheckpassword-users passwd [ -c | -C ] [ -y ] [ -f file ] login\n\
                         \tcheckpassword-users del [ -f file ] login\n\
                         \tcheckpassword-users list [ -f file ]";

fn usage(msg: &str) -> Failure {
    Failure::perm(msg)
}

fn temp(what: &str, path: &Path, e: &io::Error) -> Failure {
    Failure::io(format_args!("unable to {what} {}", path.display()), e)
}

#[derive(Default)]
struct Options {
    uid: Option<String>,
    gid: Option<String>,
    home: Option<Vec<u8>>,
    cram: Option<bool>,
    make_home: bool,
    scheme: Option<Scheme>,
    file: Option<PathBuf>,
}

/// Runs one command; `args` excludes the program name.
pub fn run(args: Vec<OsString>, stdin: impl BufRead, out: impl Write) -> Result<(), Failure> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(usage(&format!("usage: {USAGE}")));
    };
    let mut g = Getopt::new(rest.to_vec(), "u:g:d:cCmyf:");
    let mut o = Options::default();
    for opt in g.by_ref() {
        match opt {
            Opt::Ok(b'u', Some(v)) => o.uid = Some(v.to_string_lossy().into_owned()),
            Opt::Ok(b'g', Some(v)) => o.gid = Some(v.to_string_lossy().into_owned()),
            Opt::Ok(b'd', Some(v)) => o.home = Some(v.as_bytes().to_vec()),
            Opt::Ok(b'c', _) => o.cram = Some(true),
            Opt::Ok(b'C', _) => o.cram = Some(false),
            Opt::Ok(b'm', _) => o.make_home = true,
            Opt::Ok(b'y', _) => o.scheme = Some(Scheme::Yescrypt),
            Opt::Ok(b'f', Some(v)) => o.file = Some(v.into()),
            bad => {
                let why = bad.complaint().unwrap_or_default();
                return Err(usage(&format!("{why}\nusage: {USAGE}")));
            }
        }
    }
    let operands = g.rest();
    let path = o
        .file
        .clone()
        .unwrap_or_else(|| qmail::home::home().join("users/checkpassword.cdb"));
    let login = match (cmd.as_bytes(), &operands[..]) {
        (b"list", []) => None,
        (b"add" | b"passwd" | b"del", [l]) => Some(
            Login::parse(l.as_bytes())
                .map_err(|_| usage(&format!("invalid login: {}", l.to_string_lossy())))?
                .key(),
        ),
        _ => return Err(usage(&format!("usage: {USAGE}"))),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| temp("create", dir, &e))?;
    }
    // The password first: a user typing it must not hold the lock the others wait on.
    let password = match cmd.as_bytes() {
        b"add" | b"passwd" => Some(qmail::secret::Secret(read_password(stdin)?)),
        _ => None,
    };
    let password = password.as_deref().unwrap_or_default();
    let _lock = userdb::lock(&path).map_err(|e| temp("lock", &path, &e))?;
    let mut users = userdb::load(&path).map_err(|e| temp("read", &path, &e))?;
    let found = login.as_ref().and_then(|l| users.iter().position(|u| &u.login == l));
    match (cmd.as_bytes(), login, found) {
        (b"list", _, _) => return userdb::list(&users, out).map_err(|e| temp("write", Path::new("stdout"), &e)),
        (b"add", Some(l), None) => users.push(new_user(l, &o, password)?),
        (b"add", Some(l), Some(_)) => return Err(usage(&format!("{} exists", String::from_utf8_lossy(&l)))),
        (b"passwd", Some(_), Some(i)) => set_password(&mut users[i], &o, password)?,
        (b"del", Some(_), Some(i)) => {
            users.remove(i);
        }
        (_, Some(l), None) => return Err(usage(&format!("no such user: {}", String::from_utf8_lossy(&l)))),
        _ => unreachable!("commands were checked above"),
    }
    users.sort_by(|a, b| a.login.cmp(&b.login));
    userdb::store(&path, &users).map_err(|e| temp("write", &path, &e))
}

fn new_user(login: Vec<u8>, o: &Options, password: &[u8]) -> Result<User, Failure> {
    let (uid, gid) = ids(o)?;
    let home = o.home.clone().ok_or_else(|| usage("add needs -d home"))?;
    if home.first() != Some(&b'/') || home.iter().any(|&b| b == b':' || b == b'\n' || b == 0) {
        return Err(usage("home must be an absolute path without ':' or newlines"));
    }
    let mut user = User {
        login,
        hash: Vec::new(),
        uid,
        gid,
        home,
        secret: None,
    };
    set_password(&mut user, o, password)?;
    if o.make_home {
        make_home(&user)?;
    }
    Ok(user)
}

/// `-u` and `-g` as numbers, or as names in /etc/passwd and /etc/group.
fn ids(o: &Options) -> Result<(u32, u32), Failure> {
    let uid = o.uid.as_deref().ok_or_else(|| usage("add needs -u uid"))?;
    let read = |p: &str| std::fs::read(p).map_err(|e| temp("read", Path::new(p), &e));
    let (uid, user_gid) = match uid.parse::<u32>() {
        Ok(n) => (n, None),
        Err(_) => {
            let pw = qmail::passwd::Passwd::find(&read("/etc/passwd")?, uid.as_bytes())
                .ok_or_else(|| usage(&format!("no such user: {uid}")))?;
            (pw.uid, Some(pw.gid))
        }
    };
    let gid = match (o.gid.as_deref(), user_gid) {
        (Some(g), _) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => qmail::passwd::group_gid(&read("/etc/group")?, g.as_bytes())
                .ok_or_else(|| usage(&format!("no such group: {g}")))?,
        },
        (None, Some(g)) => g,
        (None, None) => return Err(usage("a numeric -u needs -g gid")),
    };
    Ok((uid, gid))
}

fn set_password(user: &mut User, o: &Options, password: &[u8]) -> Result<(), Failure> {
    let scheme = o.scheme.unwrap_or(Scheme::Sha512);
    let made = hash::make(password, scheme).map_err(Failure::temp);
    let cram = o.cram.unwrap_or(user.secret.is_some());
    user.secret = cram.then(|| password.to_vec());
    user.hash = made?.into_bytes();
    Ok(())
}

/// The first line of stdin; on a terminal, asked for with echo off.
fn read_password(mut stdin: impl BufRead) -> Result<Vec<u8>, Failure> {
    let tty = Echo::off();
    if tty.is_some() {
        eprint!("Password: ");
    }
    let mut line = Vec::new();
    let read = stdin.read_until(b'\n', &mut line);
    if tty.is_some() {
        eprintln!();
    }
    drop(tty);
    read.map_err(|e| temp("read", Path::new("stdin"), &e))?;
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    if line.is_empty() || line.len() > 255 || line.contains(&0) {
        wipe(line);
        return Err(usage("the password must be 1 to 255 bytes, without NUL"));
    }
    Ok(line)
}

/// Terminal echo switched off while this lives.
struct Echo(libc::termios);

impl Echo {
    fn off() -> Option<Echo> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails on a non-terminal.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
            return None;
        }
        let mut quiet = t;
        quiet.c_lflag &= !libc::ECHO;
        // SAFETY: a termios obtained from tcgetattr, changed in one flag.
        unsafe { libc::tcsetattr(0, libc::TCSAFLUSH, &quiet) };
        Some(Echo(t))
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        // SAFETY: restores the settings tcgetattr returned.
        unsafe { libc::tcsetattr(0, libc::TCSAFLUSH, &self.0) };
    }
}

/// HOME and HOME/Maildir/{cur,new,tmp}, mode 0700, owned by the user.
fn make_home(user: &User) -> Result<(), Failure> {
    use std::os::unix::fs::{chown, DirBuilderExt};
    let home = PathBuf::from(std::ffi::OsStr::from_bytes(&user.home));
    let maildir = home.join("Maildir");
    for dir in [
        home.clone(),
        maildir.clone(),
        maildir.join("cur"),
        maildir.join("new"),
        maildir.join("tmp"),
    ] {
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => chown(&dir, Some(user.uid), Some(user.gid)).map_err(|e| temp("chown", &dir, &e))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(temp("create", &dir, &e)),
        }
    }
    Ok(())
}
