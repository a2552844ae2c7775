//! tcpserver: accept TCP connections and run a program for each, as ucspi-tcp 0.88
//! does (and its IPv6 patch for IPv6 clients).
//!
//! `tcpserver [opts] host port prog [arg ...]`. The parent binds, drops to `-u`/`-g`,
//! and accepts while fewer than `-c` children run ([`serve`]); each child works out the
//! `TCP*` environment, applies the rules CDB (opened afresh per connection), logs
//! `ok`/`deny` and execs the program with the connection on fd 0/1 ([`child`]).
//! Inherited descriptors other than 0 and 1 pass through to the program, as in 0.88.

mod child;
mod ident;
mod listen;
mod log;
pub mod options;
mod serve;
mod services;

use log::Log;
use options::{Options, USAGE};
use std::ffi::OsString;
use std::io::Write;

/// Runs tcpserver with `args` (argv without argv[0]); returns only an exit code.
pub fn main(args: Vec<OsString>) -> i32 {
    let o = match Options::parse(args, |n| std::env::var(n).ok()) {
        Ok(o) => o,
        Err(refused) => {
            if let Some(c) = refused.complaint {
                qmail::log::line(&format!("tcpserver: {c}"));
            }
            if let Some(f) = refused.fatal {
                qmail::log::line(&format!("tcpserver: fatal: {f}"));
            }
            qmail::log::line(&format!("tcpserver: {USAGE}"));
            return qmail::exit::PERMANENT;
        }
    };
    let log = Log(o.verbosity);
    let listener = listen::open(&o).unwrap_or_else(|f| log.fatal(111, &f));
    if o.print_port {
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let _ = std::io::stdout().write_all(format!("{port}\n").as_bytes());
    }
    if let Err(e) = qmail::privs::drop_to(o.uid, o.gid) {
        let which = if o.gid.is_some() && o.uid.is_none() {
            "gid"
        } else {
            "uid"
        };
        log.fatal(111, &format!("unable to set {which}: {}", qmail::errstr::io_str(&e)));
    }
    serve::run(&o, listener, log)
}
