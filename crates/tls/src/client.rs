//! ucspi-tlsc: the client-side engine, for qmail-remote after a plaintext STARTTLS.
//!
//! ```text
//! ucspi-tlsc -n servername [ -c cafile | -k ] [ -t timeout ] [ -d notif ] fdr fdw
//! ```
//!
//! The caller hands over the connected socket as fd 0/1 and keeps two pipes: the engine
//! reads plaintext to send from `fdr` and writes what the server sent to `fdw`. It does
//! the handshake with SNI `servername` and verifies the certificate chain against
//! `cafile`, `$CAFILE`, or Debian's ca-certificates bundle, and the name against
//! `servername`; `-k` accepts any certificate (opportunistic TLS). On success it writes
//! the session's variables (`SSL_PROTOCOL=...\0...\0\0`) on `notif`, if given, and closes
//! it; a caller that reads EOF there instead knows TLS did not come up.
//!
//! Exit codes: 0 when the session ended cleanly; 100 when the certificate was refused
//! (the route must not fall back to plaintext); 111 for anything temporary.

use crate::config;
use crate::fdio::{self, Fd};
use crate::relay::{self, Failure};
use qmail::exit::{PERMANENT, TEMPORARY};
use qmail::getopt::{Getopt, Opt};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PROG: &str = "ucspi-tlsc";
const USAGE: &str = "ucspi-tlsc -n servername [ -c cafile | -k ] [ -t timeout ] [ -d notif ] fdr fdw";
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

fn die(code: i32, msg: &str) -> ! {
    qmail::exit::die(PROG, code, msg)
}

pub fn run(args: Vec<OsString>) -> ! {
    let mut g = Getopt::new(args, "n:c:kt:d:");
    let (mut name, mut ca, mut verify, mut timeout, mut notify) = (None, None, true, 30u64, None);
    let num = |v: &Option<OsString>| v.as_ref().and_then(|v| v.to_str()?.parse::<i64>().ok());
    for opt in g.by_ref() {
        match opt {
            Opt::Ok(b'n', Some(v)) => name = Some(v.to_string_lossy().into_owned()),
            Opt::Ok(b'c', Some(v)) => ca = Some(PathBuf::from(v)),
            Opt::Ok(b'k', _) => verify = false,
            Opt::Ok(b't', ref v) if num(v).is_some_and(|n| n > 0) => timeout = num(v).unwrap_or(30) as u64,
            Opt::Ok(b'd', ref v) if num(v).is_some_and(|n| n >= 0) => notify = num(v).map(|n| n as i32),
            bad => qmail::exit::bad_option(PROG, &bad, USAGE),
        }
    }
    let fds: Vec<i32> = g.rest().iter().filter_map(|a| a.to_str()?.parse().ok()).collect();
    let (Some(name), &[fdr, fdw]) = (name, &fds[..]) else {
        qmail::exit::usage(PROG, USAGE)
    };
    let ca = verify.then(|| {
        ca.or_else(|| std::env::var_os("CAFILE").map(PathBuf::from))
            .unwrap_or(SYSTEM_ROOTS.into())
    });
    let tls = config::client(ca.as_deref()).unwrap_or_else(|e| die(TEMPORARY, &e));
    let server = rustls::pki_types::ServerName::try_from(name.clone())
        .unwrap_or_else(|_| die(PERMANENT, &format!("invalid server name: {name}")));
    let mut conn = rustls::Connection::Client(
        rustls::ClientConnection::new(tls, server).unwrap_or_else(|e| die(TEMPORARY, &e.to_string())),
    );
    // SAFETY: setting a signal disposition; EPIPE is handled where writes happen.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let (net_r, net_w) = (Fd::net(0), Fd::net(1));
    match relay::handshake(&mut conn, net_r, net_w, Instant::now() + Duration::from_secs(timeout)) {
        Ok(()) => {}
        Err(Failure::Tls(e @ rustls::Error::InvalidCertificate(_))) => {
            die(PERMANENT, &format!("certificate of {name} refused: {e}"))
        }
        Err(e) => die(TEMPORARY, &format!("TLS handshake with {name} failed: {e}")),
    }
    if let Some(fd) = notify {
        let _ = fdio::write_all(fd, &config::info_string(&config::session_info(&conn)));
        fdio::close(fd);
    }
    let (app_r, app_w) = match (Fd::own(fdr), Fd::own(fdw)) {
        (Ok(r), Ok(w)) => (r, w),
        (Err(e), _) | (_, Err(e)) => die(TEMPORARY, &format!("bad descriptor: {}", qmail::errstr::io_str(&e))),
    };
    match relay::relay(&mut conn, net_r, net_w, app_r, app_w) {
        Ok(()) => std::process::exit(0),
        Err(e) => die(TEMPORARY, &format!("session with {name} ended: {e}")),
    }
}
