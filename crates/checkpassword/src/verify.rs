//! The verifier's run: read fd 3, find the account, check the password or the
//! challenge response, then become what the caller expects and exec the program.
//!
//! What "become" means depends on who called, told apart as vchkpw does (by
//! `TCPLOCALPORT` and the program's name) and by Dovecot's `ORIG_UID`:
//! - a login service (POP3, IMAP; qmail-popup runs it as root): setgroups to the
//!   account's gid alone, setgid, setuid, chdir to the home, as checkpassword 0.90;
//! - SMTP AUTH (local port 25, 465 or 587, or a program whose file name is `true`):
//!   no uid change, as vchkpw in SMTP mode; the program runs as the caller;
//! - Dovecot (`ORIG_UID` set): no uid change; the ids go back as `userdb_uid` and
//!   `userdb_gid` through `EXTRA`, and `AUTHORIZED=1` lookups skip the password.
//!
//! Installed setuid (make install; the seeds' vchkpw), a run serves only the callers
//! of [`crate::trust`], refuses password-less and credentials lookups, and a run that
//! does not become the account gives up the borrowed privilege before exec.
//!
//! Fields shaped like a challenge response are only ever checked as one
//! ([`challenge::shaped`]). Failures are answered at a fixed time after the start
//! (`control/checkpwdelay` seconds, default 2), so neither an unknown login nor a
//! cheap hash can be told from a wrong password by the clock, and guessing is slow.
//! Each refused or failed attempt is one log line on stderr, the login and the
//! client's address escaped (qmail::log), never the password.

use crate::challenge;
use crate::hash::{self, Check};
use crate::input::{self, BadInput, Request};
use crate::login::Login;
use crate::sources::{self, Account};
use crate::trust::{self, Trust};
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

    fn name(self) -> &'static str {
        match self {
            Flavor::Checkpassword => "checkpassword",
            Flavor::Vchkpw => "vchkpw",
            Flavor::Cmd5checkpw => "cmd5checkpw",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    Login,
    Smtp,
    /// `credentials`: a credentials lookup (`CREDENTIALS_LOOKUP=1` with
    /// `AUTHORIZED=1`), answered with the stored secret.
    Dovecot {
        lookup: bool,
        credentials: bool,
    },
}

impl Caller {
    pub fn from_env(env: &Env, prog: &OsStr) -> Caller {
        if env.get("ORIG_UID").is_some() || env.get("AUTHORIZED").is_some() {
            let lookup = env.get("AUTHORIZED").is_some_and(|v| v == "1");
            return Caller::Dovecot {
                lookup,
                credentials: lookup && env.get("CREDENTIALS_LOOKUP").is_some_and(|v| v == "1"),
            };
        }
        match env.get("TCPLOCALPORT").map(OsStr::as_bytes) {
            Some(b"25" | b"465" | b"587") => Caller::Smtp,
            Some(b"110" | b"995" | b"143" | b"993") => Caller::Login,
            // The seeds' `/bin/true`, exactly: a name that merely contains it
            // (`/opt/construe/pop3d`) is a login service and must become the user.
            _ if Path::new(prog).file_name() == Some(OsStr::new("true")) => Caller::Smtp,
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
    /// A setuid run for a caller that may not have it (crate::trust).
    Refused,
    Setgid,
    Setuid,
    Chdir,
    Exec,
    Temporary,
}

impl Failure {
    /// The exit code: the checkpassword interface's 1/2/111, vchkpw's own codes
    /// (3 no, 11 bad input, 12/13 empty login/password, 20 bad characters, 4/5/6
    /// setgid/setuid/chdir) under that name, and whatever the name, what Dovecot 2.3.14+
    /// reads (1 failed, 2 misuse, 3 unknown on a lookup, anything else internal).
    /// vchkpw's 24 for an unreadable database is 111 here: a database outage must
    /// read as "try again", never as a wrong password. A refused caller gets 111
    /// too: it is the admin's setting, not the password, that says no.
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
            (_, Unreadable | Refused | Chdir | Exec | Temporary) => 111,
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

/// What one run knows for its log lines.
struct Run<'a> {
    flavor: Flavor,
    caller: Caller,
    env: &'a Env,
    /// The real uid: in a setuid run, the user who started it.
    uid: u32,
}

impl Run<'_> {
    fn warn(&self, msg: &str) {
        qmail::exit::warn(self.flavor.name(), "warning", msg);
    }

    /// `checkpassword: failed: user=<login> uid=N ip=IP: why`, and the failure.
    fn failed(&self, login: &[u8], why: &str, failure: Failure) -> Failure {
        let ip = match self.env.get("TCPREMOTEIP") {
            Some(ip) => format!(" ip={}", qmail::log::field(ip.as_bytes(), 100, b"")),
            None => String::new(),
        };
        let user = qmail::log::bracketed(login);
        let msg = format!("user=<{user}> uid={}{ip}: {why}", self.uid);
        qmail::exit::warn(self.flavor.name(), "failed", &msg);
        failure
    }

    /// `checkpassword: refused: uid N may not ...: user=<login>`, and the failure.
    fn refused(&self, login: &[u8], what: &str) -> Failure {
        let name = self.flavor.name();
        let user = qmail::log::bracketed(login);
        let msg = format!("uid {} may not {what}: user=<{user}>", self.uid);
        qmail::exit::warn(name, "refused", &msg);
        Failure::Refused
    }
}

/// Runs the verifier; returns only on failure, with the exit code.
pub fn run(argv0: &OsStr, args: &[OsString]) -> i32 {
    let start = Instant::now();
    let flavor = Flavor::from_argv0(argv0);
    let env = Env::inherited();
    let home = qmail::home::home();
    let caller = Caller::from_env(&env, args.first().map_or(OsStr::new(""), |a| a.as_os_str()));
    let run = Run {
        flavor,
        caller,
        env: &env,
        uid: nix::unistd::getuid().as_raw(),
    };
    let mut delay = None;
    let failure = match verify(&run, &home, args, &mut delay) {
        Ok(never) => match never {},
        Err(f) => f,
    };
    if let (true, Some(delay)) = (failure.delayed(), delay) {
        if let Some(left) = delay.checked_sub(start.elapsed()) {
            std::thread::sleep(left);
        }
    }
    failure.code(flavor, caller)
}

/// `control/checkpwdelay`: seconds, default 2. Any error reading it is temporary.
fn answer_delay(home: &Path) -> Result<Duration, String> {
    let path = home.join("control/checkpwdelay");
    let line = qmail::control::read_line(&path)
        .map_err(|e| format!("unable to read {}: {}", path.display(), qmail::errstr::io_str(&e)))?;
    match line {
        None => Ok(Duration::from_secs(2)),
        Some(v) => std::str::from_utf8(&v)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs)
            .ok_or_else(|| format!("unable to parse {}: not a number of seconds", path.display())),
    }
}

enum Never {}

fn verify(run: &Run, home: &Path, args: &[OsString], delay: &mut Option<Duration>) -> Result<Never, Failure> {
    let temporary = |msg: String| {
        run.warn(&msg);
        Failure::Temporary
    };
    if args.is_empty() {
        run.warn("usage: checkpassword prog [arg ...]");
        return Err(Failure::NoProgram);
    }
    let setuid = qmail::home::secure();
    // Decided from the real ids alone, before fd 3's login is looked up anywhere.
    let trust = if setuid {
        trust::of(&trust::Caller::real(), home, Path::new(trust::GROUP_DB)).map_err(temporary)?
    } else {
        Some(Trust::Full)
    };
    let request = match input::read_fd3(input::DEADLINE) {
        Err(BadInput::Unreadable(e)) => {
            run.warn(&format!("unable to read descriptor 3: {}", qmail::errstr::io_str(&e)));
            return Err(Failure::Unreadable);
        }
        Err(BadInput::Timeout) => {
            run.warn(&format!(
                "timeout reading descriptor 3 ({} seconds)",
                input::DEADLINE.as_secs()
            ));
            return Err(Failure::Unreadable);
        }
        other => other.and_then(Request::parse),
    };
    let login_of = |r: &Result<Request, BadInput>| r.as_ref().map_or(Vec::new(), |r| r.login().to_vec());
    let Some(trust) = trust else {
        let what = format!("run {} setuid", run.flavor.name());
        return Err(run.refused(&login_of(&request), &what));
    };
    if setuid && run.env.get("CREDENTIALS_LOOKUP").is_some() {
        // It would hand the stored secret to whoever asks.
        run.warn("refusing CREDENTIALS_LOOKUP in a setuid run");
        return Err(Failure::Temporary);
    }
    *delay = Some(answer_delay(home).map_err(temporary)?);
    let request = request.map_err(|e| match e {
        BadInput::TooLong => run.failed(b"", "more than 512 bytes on descriptor 3", Failure::TooLong),
        _ => run.failed(b"", "malformed input on descriptor 3", Failure::Malformed),
    })?;
    let typed = request.login();
    if typed.is_empty() {
        return Err(run.failed(typed, "empty login", Failure::EmptyLogin));
    }
    let login = Login::parse(typed).map_err(|_| run.failed(typed, "invalid login", Failure::BadLogin))?;
    let lookup = matches!(run.caller, Caller::Dovecot { lookup: true, .. });
    if lookup && setuid {
        run.warn("refusing a password-less lookup in a setuid run");
        return Err(Failure::Temporary);
    }
    if !lookup && request.password().is_empty() {
        return Err(run.failed(typed, "empty password", Failure::EmptyPassword));
    }
    let challenged = challenge::shaped(request.password(), request.third());
    if challenged && trust != Trust::Full {
        return Err(run.refused(typed, "give challenge-response proofs"));
    }
    let sources = sources::configured(home).map_err(temporary)?;
    let account = sources::find(&sources, &login).map_err(temporary)?;
    let Some(account) = account else {
        return Err(if lookup {
            run.failed(typed, "no such user (lookup)", Failure::Unknown)
        } else {
            run.failed(typed, "no such user", Failure::Rejected)
        });
    };
    if !lookup {
        authenticate(run, &account, &request, challenged)?;
    }
    drop(request);
    become_account(run, run.env.clone(), &account, &login, args)
}

/// The password against the hash, or (for fields of that shape, and only then) a
/// challenge response against the stored secret.
fn authenticate(run: &Run, account: &Account, request: &Request, challenged: bool) -> Result<(), Failure> {
    let typed = request.login();
    let fail = |why: &str| run.failed(typed, why, Failure::Rejected);
    if let Some(why) = account.refused {
        return Err(fail(why));
    }
    if challenged {
        let Some(secret) = account.secret.as_deref() else {
            return Err(fail("challenge response, but no secret stored"));
        };
        return match challenge::proves(secret, request.password(), request.third()) {
            true => Ok(()),
            false => Err(fail("challenge response mismatch")),
        };
    }
    match hash::verify(request.password(), &account.hash) {
        Check::Match => Ok(()),
        Check::NoMatch => Err(fail("password mismatch")),
        Check::Locked => Err(fail("account locked")),
        Check::Unsupported => {
            let who = qmail::log::field(&account.name, 100, b"");
            run.warn(&format!("unsupported password hash scheme for {who}"));
            Err(fail("unsupported hash"))
        }
        Check::Temporary(why) => {
            run.warn(&why);
            Err(Failure::Temporary)
        }
    }
}

fn os(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

/// Sets the environment and the ids the caller expects, then execs the program.
fn become_account(
    run: &Run,
    mut env: Env,
    account: &Account,
    login: &Login,
    args: &[OsString],
) -> Result<Never, Failure> {
    let (flavor, caller) = (run.flavor, run.caller);
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
    // cmd5checkpw changes no ids and no directory, whoever calls it (cmd5checkpw(8),
    // 0.22 and 0.30 alike).
    if caller == Caller::Login && flavor != Flavor::Cmd5checkpw {
        become_ids(run, account)?;
        std::env::set_current_dir(os(&account.home)).map_err(|e| {
            run.warn(&format!("unable to chdir to home: {}", qmail::errstr::io_str(&e)));
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
    run.warn(&format!(
        "unable to run {}: {}",
        args[0].to_string_lossy(),
        qmail::errstr::io_str(&e)
    ));
    Err(Failure::Exec)
}

/// setgroups, setgid, setuid to the account, as checkpassword 0.90; nothing to do
/// when this process already is the account.
fn become_ids(run: &Run, account: &Account) -> Result<(), Failure> {
    use nix::unistd::{getegid, geteuid};
    if geteuid().as_raw() == account.uid && getegid().as_raw() == account.gid && !qmail::home::secure() {
        return Ok(());
    }
    let why = |what: &str, e: std::io::Error| {
        run.warn(&format!("unable to {what}: {}", qmail::errstr::io_str(&e)));
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
        assert_eq!(c(&env, "/opt/construe/pop3d"), Caller::Login);
        assert_eq!(c(&env, "/bin/true-ish"), Caller::Login);
        assert_eq!(c(&env, "true"), Caller::Smtp);
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
        env.set("CREDENTIALS_LOOKUP", "1");
        assert_eq!(
            c(&env, "x"),
            Caller::Dovecot {
                lookup: false,
                credentials: false
            }
        );
        env.set("AUTHORIZED", "1");
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
