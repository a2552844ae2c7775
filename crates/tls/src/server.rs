//! ucspi-tlsd: the server-side UCSPI-TLS engine, run by tcpserver in front of an
//! application (qmail-smtpd, qmail-popup).
//!
//! ```text
//! ucspi-tlsd [ -i ] [ -t timeout ] [ -u uid ] [ -g gid ] prog [ arg ... ]
//! ```
//!
//! The certificate and key are read first, as root: `$CERTFILE` and `$KEYFILE` (s6's
//! names), else `QMAILHOME/control/servercert.pem` holding both (qmail-tls's file).
//! Then the process forks. The engine, the child, drops to its own user, `qmailtls`
//! from `QMAILHOME/control/ids` (or `$TLS_UID` and `$TLS_GID`, both), and is the only
//! process that ever holds the key. Not 65534: every `nobody` daemon could signal
//! it. Run as root without either, ucspi-tlsd refuses to start (111). The
//! application, the parent, drops to `-u`/`-g` (`-u` alone is refused: it would keep
//! root's groups) and execs `prog` without CERTFILE, KEYFILE, CAFILE, CADIR, TLS_UID
//! and TLS_GID in its environment.
//!
//! Opportunistic (STARTTLS, STLS): the application keeps the connection on fd 0/1 and
//! gets `SSLCTLFD`, `SSLREADFD`, `SSLWRITEFD` (and `UCSPITLS`, if the rules did not set
//! it). When it writes `Y` or `y` on the control socket, the engine does the handshake;
//! after `Y` it answers with the session's variables (`SSL_PROTOCOL=...\0...\0\0`). If the
//! application exits or closes the socket first, the engine exits 0.
//!
//! Implicit (`-i`, SMTPS on 465, POP3S on 995): the handshake comes first, then the
//! application runs with plaintext pipes on fd 0/1 and `SSL_PROTOCOL`, `SSL_CIPHER` (and
//! `SSL_TLS_SNI`) in its environment; their presence says the session is under TLS.
//!
//! A failed or stalled handshake (`-t`, default 30 seconds) costs one log line and the
//! engine's exit.

use crate::config;
use crate::fdio::{self, Fd};
use crate::relay;
use qmail::env::Env;
use qmail::getopt::{Getopt, Opt};
use std::ffi::OsString;
use std::os::fd::RawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PROG: &str = "ucspi-tlsd";
const USAGE: &str = "ucspi-tlsd [ -i ] [ -t timeout ] [ -u uid ] [ -g gid ] prog";
/// Variables for the engine only.
const ENGINE_VARS: [&str; 6] = ["CERTFILE", "KEYFILE", "CAFILE", "CADIR", "TLS_UID", "TLS_GID"];

struct Options {
    implicit: bool,
    timeout: Duration,
    uid: Option<u32>,
    gid: Option<u32>,
    prog: Vec<OsString>,
}

fn options(args: Vec<OsString>) -> Options {
    let mut g = Getopt::new(args, "it:u:g:");
    let mut o = Options {
        implicit: false,
        timeout: Duration::from_secs(30),
        uid: None,
        gid: None,
        prog: Vec::new(),
    };
    let num = |v: &Option<OsString>| v.as_ref().and_then(|v| v.to_str()?.parse::<u32>().ok());
    for opt in g.by_ref() {
        match opt {
            Opt::Ok(b'i', _) => o.implicit = true,
            Opt::Ok(b't', ref v) if num(v).is_some() => o.timeout = Duration::from_secs(num(v).unwrap_or(30).into()),
            Opt::Ok(b'u', ref v) if num(v).is_some() => o.uid = num(v),
            Opt::Ok(b'g', ref v) if num(v).is_some() => o.gid = num(v),
            bad => qmail::exit::bad_option(PROG, &bad, USAGE),
        }
    }
    o.prog = g.rest();
    if o.uid.is_some() && o.gid.is_none() {
        qmail::exit::warn(
            PROG,
            "fatal",
            "-u without -g would keep root's group and groups: give -g gid",
        );
        qmail::exit::usage(PROG, USAGE);
    }
    if o.prog.is_empty() {
        qmail::exit::usage(PROG, USAGE);
    }
    o
}

fn die(msg: &str) -> ! {
    qmail::exit::die(PROG, qmail::exit::TEMPORARY, msg)
}

fn env_id(env: &Env, name: &str) -> Option<u32> {
    let v = env.get(name)?;
    Some(
        v.to_str()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| die(&format!("${name} is not a number"))),
    )
}

/// The engine's uid and gid: `$TLS_UID` and `$TLS_GID`, else qmailtls's from
/// control/ids. Any doubt is fatal: an engine left as root, or sharing a uid with
/// other daemons, is what this user exists to prevent.
fn engine_ids(env: &Env) -> (u32, u32) {
    match (env_id(env, "TLS_UID"), env_id(env, "TLS_GID")) {
        (Some(uid), Some(gid)) => return (uid, gid),
        (Some(_), None) => die("$TLS_UID without $TLS_GID"),
        (None, Some(_)) => die("$TLS_GID without $TLS_UID"),
        (None, None) => {}
    }
    let home = qmail::home::home();
    let file = home.join(qmail::ids::FILE);
    let ids = qmail::ids::Ids::load(&home).unwrap_or_else(|e| {
        // A malformed file says which line; an OS error in djb's words.
        let why = match e.kind() {
            std::io::ErrorKind::InvalidData => e.to_string(),
            _ => qmail::errstr::io_str(&e),
        };
        die(&format!("unable to read {}: {why}", file.display()))
    });
    ids.tls().unwrap_or_else(|| {
        die(&format!(
            "no user {} in {}: create it and run qmail-mkids (INSTALL step 7), or set $TLS_UID and $TLS_GID",
            qmail::ids::TLS_USER,
            file.display()
        ))
    })
}

/// Where the certificate and the key are.
fn cert_paths(env: &Env) -> (PathBuf, PathBuf) {
    match (env.get("CERTFILE"), env.get("KEYFILE")) {
        (Some(c), k) => (c.into(), k.unwrap_or(c).into()),
        (None, _) => {
            let p = qmail::home::home().join("control/servercert.pem");
            (p.clone(), p)
        }
    }
}

pub fn run(args: Vec<OsString>) -> ! {
    let o = options(args);
    let mut env = Env::inherited();
    let (cert, key) = cert_paths(&env);
    let engine_ids = nix_root().then(|| engine_ids(&env));
    for v in ENGINE_VARS {
        env.unset(v);
    }
    let tls = config::server(&cert, &key);
    if o.implicit {
        let tls = tls.unwrap_or_else(|e| die(&e));
        implicit(&o, env, tls, engine_ids)
    }
    match tls {
        Ok(tls) => opportunistic(&o, env, tls, engine_ids),
        Err(e) => {
            qmail::exit::warn(PROG, "warning", &format!("TLS not offered: {e}"));
            exec_app(&o, env)
        }
    }
}

fn nix_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn fork() -> libc::pid_t {
    // SAFETY: single-threaded; the child only continues this program's own code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        die(&format!(
            "unable to fork: {}",
            qmail::errstr::io_str(&std::io::Error::last_os_error())
        ));
    }
    pid
}

fn become_engine(ids: Option<(u32, u32)>) {
    // SAFETY: setting a signal disposition; EPIPE is handled where writes happen.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    if let Some((uid, gid)) = ids {
        if let Err(e) = qmail::privs::drop_to(Some(uid), Some(gid)) {
            die(&format!("unable to drop to {uid}:{gid}: {}", qmail::errstr::io_str(&e)));
        }
    }
}

/// Makes `fd` survive exec (the ends the application keeps).
fn inheritable(fd: RawFd) {
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
}

fn exec_app(o: &Options, env: Env) -> ! {
    if let Err(e) = qmail::privs::drop_to(o.uid, o.gid) {
        die(&format!("unable to set uid/gid: {}", qmail::errstr::io_str(&e)));
    }
    let e = env.exec(&o.prog);
    die(&format!(
        "unable to run {}: {}",
        o.prog[0].to_string_lossy(),
        qmail::errstr::io_str(&e)
    ))
}

fn handshake_and_relay(
    o: &Options,
    tls: std::sync::Arc<rustls::ServerConfig>,
    notify: Option<RawFd>,
    app_r: RawFd,
    app_w: RawFd,
) -> ! {
    let mut conn =
        rustls::Connection::Server(rustls::ServerConnection::new(tls).unwrap_or_else(|e| die(&e.to_string())));
    let (net_r, net_w) = (Fd::net(0), Fd::net(1));
    if let Err(e) = relay::handshake(&mut conn, net_r, net_w, Instant::now() + o.timeout) {
        qmail::exit::warn(PROG, "warning", &format!("handshake failed: {e}"));
        std::process::exit(1);
    }
    if let Some(fd) = notify {
        let _ = fdio::write_all(fd, &config::info_string(&config::session_info(&conn)));
        fdio::close(fd);
    }
    let (app_r, app_w) = match (Fd::own(app_r), Fd::own(app_w)) {
        (Ok(r), Ok(w)) => (r, w),
        (Err(e), _) | (_, Err(e)) => die(&qmail::errstr::io_str(&e)),
    };
    match relay::relay(&mut conn, net_r, net_w, app_r, app_w) {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            qmail::exit::warn(PROG, "warning", &format!("session ended: {e}"));
            std::process::exit(1)
        }
    }
}

fn opportunistic(o: &Options, mut env: Env, tls: std::sync::Arc<rustls::ServerConfig>, ids: Option<(u32, u32)>) -> ! {
    let mut ctl = [0; 2];
    // SAFETY: socketpair fills the two-element array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            ctl.as_mut_ptr(),
        )
    } != 0
    {
        die(&format!(
            "unable to create the control socket: {}",
            qmail::errstr::io_str(&std::io::Error::last_os_error())
        ));
    }
    let (to_engine_r, to_engine_w) = fdio::pipe().unwrap_or_else(|e| die(&qmail::errstr::io_str(&e)));
    let (to_app_r, to_app_w) = fdio::pipe().unwrap_or_else(|e| die(&qmail::errstr::io_str(&e)));
    if fork() == 0 {
        for fd in [ctl[1], to_engine_w, to_app_r] {
            fdio::close(fd);
        }
        become_engine(ids);
        let mut cmd = [0u8; 1];
        let n = loop {
            // SAFETY: reads one byte into cmd.
            let n = unsafe { libc::read(ctl[0], cmd.as_mut_ptr().cast(), 1) };
            if n >= 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break n;
            }
        };
        match (n, cmd[0]) {
            (1, b'Y') => handshake_and_relay(o, tls, Some(ctl[0]), to_engine_r, to_app_w),
            (1, b'y') => {
                fdio::close(ctl[0]);
                handshake_and_relay(o, tls, None, to_engine_r, to_app_w)
            }
            (1, c) => die(&format!("unknown command on the control socket: {:?}", c as char)),
            _ => std::process::exit(0), // the application never asked
        }
    }
    drop(tls);
    for fd in [ctl[0], to_engine_r, to_app_w] {
        fdio::close(fd);
    }
    for fd in [ctl[1], to_app_r, to_engine_w] {
        inheritable(fd);
    }
    env.set("SSLCTLFD", ctl[1].to_string());
    env.set("SSLREADFD", to_app_r.to_string());
    env.set("SSLWRITEFD", to_engine_w.to_string());
    if env.get("UCSPITLS").is_none() {
        env.set("UCSPITLS", "");
    }
    exec_app(o, env)
}

fn implicit(o: &Options, mut env: Env, tls: std::sync::Arc<rustls::ServerConfig>, ids: Option<(u32, u32)>) -> ! {
    let (info_r, info_w) = fdio::pipe().unwrap_or_else(|e| die(&qmail::errstr::io_str(&e)));
    let (to_engine_r, to_engine_w) = fdio::pipe().unwrap_or_else(|e| die(&qmail::errstr::io_str(&e)));
    let (to_app_r, to_app_w) = fdio::pipe().unwrap_or_else(|e| die(&qmail::errstr::io_str(&e)));
    if fork() == 0 {
        for fd in [info_r, to_engine_w, to_app_r] {
            fdio::close(fd);
        }
        become_engine(ids);
        handshake_and_relay(o, tls, Some(info_w), to_engine_r, to_app_w)
    }
    drop(tls);
    for fd in [info_w, to_engine_r, to_app_w] {
        fdio::close(fd);
    }
    // The engine's answer: the session's variables, or EOF when the handshake failed
    // (the engine logs why); its deadline is the handshake's, so a second more here.
    let deadline = Instant::now() + o.timeout + Duration::from_secs(1);
    let info = qmail::ucspitls::read_info(info_r, deadline).unwrap_or_default();
    if info.is_empty() {
        std::process::exit(1);
    }
    for (k, v) in qmail::ucspitls::decode(&info) {
        use std::os::unix::ffi::OsStrExt;
        env.set(std::ffi::OsStr::from_bytes(&k), std::ffi::OsStr::from_bytes(&v));
    }
    for v in ["SSLCTLFD", "SSLREADFD", "SSLWRITEFD"] {
        env.unset(v);
    }
    // Replacing the socket on 0 and 1, which the engine holds.
    if qmail::fd::place(to_app_r, 0)
        .and_then(|()| qmail::fd::place(to_engine_w, 1))
        .is_err()
    {
        die("unable to set up descriptors");
    }
    fdio::close(to_app_r);
    fdio::close(to_engine_w);
    fdio::close(info_r);
    exec_app(o, env)
}
