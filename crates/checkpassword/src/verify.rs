//! The verifier's run: read fd 3, find the account, check the password or the
//! challenge response, then become what the caller expects and exec the program.
//!
//! What "become" means depends on who called (checkpassword.md §5.4):
//! - a login service (POP3, IMAP; qmail-popup runs it as root): setgroups to the
//!   account's gid alone, setgid, setuid, chdir to the home, as checkpassword 0.90;
//! - SMTP AUTH (local port 25, 465 or 587, or a program named like `/bin/true`): no
//!   uid change, as vchkpw in SMTP mode; the program runs as the caller;
//! - Dovecot (`ORIG_UID` set): no uid change; the ids go back as `userdb_uid` and
//!   `userdb_gid` through `EXTRA`, and `AUTHORIZED=1` lookups skip the password.
//!
//! Installed setuid (the seeds' vchkpw), a run that does not become the account gives
//! up the borrowed privilege before exec, and refuses password-less lookups.
//!
//! Failures are answered at a fixed time after the start (`control/checkpwdelay`
//! seconds, default 2), so neither an unknown login nor a cheap hash can be told from
//! a wrong password by the clock, and guessing is slow.

use crate::challenge;
use crate::hash::{self, Check};
use crate::input::{self, BadInput, Request};
use crate::login::Login;
use crate::sources::{self, Account};
use qmail::env::Env;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// The name the program was run under decides its exit codes and environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Checkpassword,
    Vchkpw,
    Cmd5checkpw,
}

impl Flavor {
    pub fn from_argv0(argv0: &OsStr) -> Flavor {
        match Path::new(argv0).file_name().map(OsStr::as_bytes) {
            Some(b"vchkpw") => Flavor::Vchkpw,
            Some(b"cmd5checkpw") => Flavor::Cmd5checkpw,
            _ => Flavor::Checkpassword,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Login,
    Smtp,
    Dovecot { lookup: bool, credentials: bool },
}

impl Caller {
    pub fn from_env(env: &Env, prog: &OsStr) -> Caller {
        if env.get("ORIG_UID").is_some() || env.get("AUTHORIZED").is_some() {
            return Caller::Dovecot {
                lookup: env.get("AUTHORIZED").is_some_and(|v| v == "1"),
                credentials: env.get("CREDENTIALS_LOOKUP").is_some_and(|v| v == "1"),
            };
        }
        match env.get("TCPLOCALPORT").map(OsStr::as_bytes) {
            Some(b"25" | b"465" | b"587") => Caller::Smtp,
            Some(b"110" | b"995" | b"143" | b"993") => Caller::Login,
            _ if prog.as_bytes().windows(4).any(|w| w == b"true") => Caller::Smtp,
            _ => Caller::Login,
        }
    }
}

/// Why no program was run.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    NoProgram,
    Unreadable,
    Malformed,
    TooLong,
    EmptyLogin,
    EmptyPassword,
    BadLogin,
    /// Unknown login, wrong password, locked or expired account.
    Rejected,
    /// A Dovecot lookup for a login no source knows.
    Unknown,
    Setgid,
    Setuid,
    Chdir,
    Exec,
    Temporary,
}

impl Failure {
    /// The exit code: the checkpassword interface's 1/2/111, vchkpw's own codes
    /// (§2.4) under that name, and Dovecot's contract (§4.3) whatever the name.
    /// vchkpw's 24 for an unreadable database is 111 here: a database outage must
    /// read as "try again", never as a wrong password.
    pub fn code(&self, flavor: Flavor, caller: Caller) -> i32 {
        use Failure::*;
        if let Caller::Dovecot { .. } = caller {
            return match self {
                Rejected | TooLong | EmptyLogin | EmptyPassword | BadLogin => 1,
                Unknown => 3,
                NoProgram | Malformed => 2,
                _ => 111,
            };
        }
        match (flavor, self) {
            (Flavor::Vchkpw, NoProgram | Unreadable | Malformed) => 11,
            (Flavor::Vchkpw, EmptyLogin) => 12,
            (Flavor::Vchkpw, EmptyPassword) => 13,
            (Flavor::Vchkpw, BadLogin) => 20,
            (Flavor::Vchkpw, Rejected | Unknown | TooLong) => 3,
            (Flavor::Vchkpw, Setgid) => 4,
            (Flavor::Vchkpw, Setuid) => 5,
            (Flavor::Vchkpw, Chdir) => 6,
            (_, NoProgram | Malformed) => 2,
            (_, Rejected | Unknown | TooLong | EmptyLogin | EmptyPassword | BadLogin | Setgid | Setuid) => 1,
            (_, Unreadable | Chdir | Exec | Temporary) => 111,
        }
    }

    /// Failures that a guesser causes wait for the fixed answer time.
    fn delayed(&self) -> bool {
        matches!(
            self,
            Failure::Rejected | Failure::TooLong | Failure::EmptyLogin | Failure::EmptyPassword | Failure::BadLogin
        )
    }
}

fn warn(flavor: Flavor, msg: &str) {
    let name = match flavor {
        Flavor::Checkpassword => "checkpassword",
        Flavor::Vchkpw => "vchkpw",
        Flavor::Cmd5checkpw => "cmd5checkpw",
    };
    qmail::exit::warn(name, "warning", msg);
}

/// Runs the verifier; returns only on failure, with the exit code.
pub fn run(argv0: &OsStr, args: &[OsString]) -> i32 {
    let start = Instant::now();
    let flavor = Flavor::from_argv0(argv0);
    let env = Env::inherited();
    let home = qmail::home::home();
    let caller = Caller::from_env(&env, args.first().map_or(OsStr::new(""), |a| a.as_os_str()));
    let failure = match verify(flavor, caller, &env, &home, args) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    if failure.delayed() {
        let delay = qmail::control::read_line(&home.join("control/checkpwdelay"))
            .ok()
            .flatten()
            .and_then(|v| std::str::from_utf8(&v).ok()?.parse::<u64>().ok())
            .unwrap_or(2);
        if let Some(left) = Duration::from_secs(delay).checked_sub(start.elapsed()) {
            std::thread::sleep(left);
        }
    }
    failure.code(flavor, caller)
}

enum Never {}

fn verify(flavor: Flavor, caller: Caller, env: &Env, home: &Path, args: &[OsString]) -> Result<Never, Failure> {
    if args.is_empty() {
        warn(flavor, "usage: checkpassword prog [arg ...]");
        return Err(Failure::NoProgram);
    }
    let request = input::read_fd3().and_then(Request::parse).map_err(|e| match e {
        BadInput::Unreadable(e) => {
            warn(
                flavor,
                &format!("unable to read descriptor 3: {}", qmail::errstr::io_str(&e)),
            );
            Failure::Unreadable
        }
        BadInput::TooLong => Failure::TooLong,
        BadInput::Malformed => Failure::Malformed,
    })?;
    if request.login().is_empty() {
        return Err(Failure::EmptyLogin);
    }
    let login = Login::parse(request.login()).map_err(|_| Failure::BadLogin)?;
    let lookup = matches!(caller, Caller::Dovecot { lookup: true, .. });
    if lookup && qmail::home::secure() {
        warn(flavor, "refusing a password-less lookup in a setuid run");
        return Err(Failure::Temporary);
    }
    if !lookup && request.password().is_empty() {
        return Err(Failure::EmptyPassword);
    }
    let temporary = |msg: String| {
        warn(flavor, &msg);
        Failure::Temporary
    };
    let sources = sources::configured(home).map_err(temporary)?;
    let account = sources::find(&sources, &login).map_err(temporary)?;
    let Some(account) = account else {
        return Err(if lookup { Failure::Unknown } else { Failure::Rejected });
    };
    if !lookup {
        authenticate(flavor, &account, &request)?;
    }
    drop(request);
    become_account(flavor, caller, env.clone(), &account, &login, args)
}

/// The password against the hash, or a challenge response against the secret.
fn authenticate(flavor: Flavor, account: &Account, request: &Request) -> Result<(), Failure> {
    if account.expired {
        return Err(Failure::Rejected);
    }
    let by_secret = account
        .secret
        .as_deref()
        .is_some_and(|s| challenge::proves(s, request.password(), request.third()));
    match hash::verify(request.password(), &account.hash) {
        _ if by_secret => Ok(()),
        Check::Match => Ok(()),
        Check::NoMatch | Check::Locked => Err(Failure::Rejected),
        Check::Unsupported => {
            let who = String::from_utf8_lossy(&account.name);
            warn(flavor, &format!("unsupported password hash scheme for {who}"));
            Err(Failure::Rejected)
        }
        Check::Temporary(why) => {
            warn(flavor, &why);
            Err(Failure::Temporary)
        }
    }
}

fn os(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

/// Sets the environment and the ids the caller expects, then execs the program.
fn become_account(
    flavor: Flavor,
    caller: Caller,
    mut env: Env,
    account: &Account,
    login: &Login,
    args: &[OsString],
) -> Result<Never, Failure> {
    let shell = account.shell.as_deref().unwrap_or(b"NOLOGIN");
    match (caller, flavor) {
        (Caller::Dovecot { lookup, credentials }, _) => {
            env.set("USER", os(&account.name));
            env.set("HOME", os(&account.home));
            env.set("userdb_uid", account.uid.to_string());
            env.set("userdb_gid", account.gid.to_string());
            let mut extra = String::from("userdb_uid userdb_gid");
            if let (true, Some(secret)) = (credentials, &account.secret) {
                let mut p = b"{PLAIN}".to_vec();
                p.extend_from_slice(secret);
                env.set("PASSWORD", os(&p));
                extra.push_str(" PASSWORD");
            }
            env.set("EXTRA", extra);
            if lookup {
                env.set("AUTHORIZED", "2");
            }
        }
        (_, Flavor::Cmd5checkpw) => {}
        (_, Flavor::Vchkpw) => {
            env.set("USER", os(&login.local));
            env.set("HOME", os(&account.home));
            env.set("SHELL", "NOLOGIN");
            env.set("VPOPUSER", os(&login.key()));
        }
        (_, Flavor::Checkpassword) => {
            env.set("USER", os(&account.name));
            env.set("HOME", os(&account.home));
            env.set("SHELL", os(shell));
        }
    }
    // cmd5checkpw changes no ids and no directory, whoever calls it (§3).
    if caller == Caller::Login && flavor != Flavor::Cmd5checkpw {
        become_ids(flavor, account)?;
        std::env::set_current_dir(os(&account.home)).map_err(|e| {
            warn(
                flavor,
                &format!("unable to chdir to home: {}", qmail::errstr::io_str(&e)),
            );
            Failure::Chdir
        })?;
    } else {
        give_up_setuid().map_err(|_| Failure::Setuid)?;
    }
    // /bin/true ignores everything; under the seeds' `softlimit -m 2000000` Debian's
    // dynamically linked one cannot even start, so its answer is given here.
    if Path::new(&args[0]).file_name() == Some(OsStr::new("true")) {
        std::process::exit(0);
    }
    let e = env.exec(args);
    warn(
        flavor,
        &format!(
            "unable to run {}: {}",
            args[0].to_string_lossy(),
            qmail::errstr::io_str(&e)
        ),
    );
    Err(Failure::Exec)
}

/// setgroups, setgid, setuid to the account, as checkpassword 0.90; nothing to do
/// when this process already is the account.
fn become_ids(flavor: Flavor, account: &Account) -> Result<(), Failure> {
    use nix::unistd::{getegid, geteuid};
    if geteuid().as_raw() == account.uid && getegid().as_raw() == account.gid && !qmail::home::secure() {
        return Ok(());
    }
    let why = |what: &str, e: std::io::Error| {
        warn(flavor, &format!("unable to {what}: {}", qmail::errstr::io_str(&e)));
    };
    qmail::privs::drop_to(None, Some(account.gid)).map_err(|e| {
        why("set gid", e);
        Failure::Setgid
    })?;
    qmail::privs::drop_to(Some(account.uid), None).map_err(|e| {
        why("set uid", e);
        Failure::Setuid
    })
}

/// In a setuid or setgid run, becomes the real caller again for good.
fn give_up_setuid() -> nix::Result<()> {
    use nix::unistd::{getgid, getuid, setresgid, setresuid};
    let (uid, gid) = (getuid(), getgid());
    setresgid(gid, gid, gid)?;
    setresuid(uid, uid, uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flavors_by_name() {
        assert_eq!(
            Flavor::from_argv0(OsStr::new("/home/vpopmail/bin/vchkpw")),
            Flavor::Vchkpw
        );
        assert_eq!(Flavor::from_argv0(OsStr::new("cmd5checkpw")), Flavor::Cmd5checkpw);
        assert_eq!(
            Flavor::from_argv0(OsStr::new("/bin/checkpassword")),
            Flavor::Checkpassword
        );
        assert_eq!(Flavor::from_argv0(OsStr::new("anything")), Flavor::Checkpassword);
    }

    #[test]
    fn callers_by_port_program_and_dovecot() {
        let mut env = Env::default();
        let c = |env: &Env, p: &str| Caller::from_env(env, OsStr::new(p));
        assert_eq!(c(&env, "/bin/true"), Caller::Smtp);
        assert_eq!(c(&env, "qmail-pop3d"), Caller::Login);
        env.set("TCPLOCALPORT", "110");
        assert_eq!(c(&env, "/bin/true"), Caller::Login);
        env.set("TCPLOCALPORT", "587");
        assert_eq!(c(&env, "qmail-pop3d"), Caller::Smtp);
        env.set("ORIG_UID", "0");
        assert_eq!(
            c(&env, "/usr/lib/dovecot/checkpassword-reply"),
            Caller::Dovecot {
                lookup: false,
                credentials: false
            }
        );
        env.set("AUTHORIZED", "1");
        env.set("CREDENTIALS_LOOKUP", "1");
        assert_eq!(
            c(&env, "x"),
            Caller::Dovecot {
                lookup: true,
                credentials: true
            }
        );
    }

    #[test]
    fn exit_codes() {
        use Failure::*;
        let dj = |f: Failure| f.code(Flavor::Checkpassword, Caller::Login);
        let vp = |f: Failure| f.code(Flavor::Vchkpw, Caller::Smtp);
        let dc = |f: Failure| {
            f.code(
                Flavor::Vchkpw,
                Caller::Dovecot {
                    lookup: false,
                    credentials: false,
                },
            )
        };
        assert_eq!(
            [
                dj(Rejected),
                dj(TooLong),
                dj(EmptyPassword),
                dj(Malformed),
                dj(NoProgram)
            ],
            [1, 1, 1, 2, 2]
        );
        assert_eq!(
            [dj(Unreadable), dj(Chdir), dj(Exec), dj(Temporary), dj(Setuid)],
            [111, 111, 111, 111, 1]
        );
        assert_eq!(
            [
                vp(Rejected),
                vp(EmptyLogin),
                vp(EmptyPassword),
                vp(BadLogin),
                vp(Unreadable)
            ],
            [3, 12, 13, 20, 11]
        );
        assert_eq!([vp(Setgid), vp(Setuid), vp(Chdir), vp(Temporary)], [4, 5, 6, 111]);
        assert_eq!(
            [dc(Rejected), dc(Unknown), dc(Temporary), dc(Malformed)],
            [1, 3, 111, 2]
        );
    }
}
