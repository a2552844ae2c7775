//! `qmail-pw2u [-/ohHuUC] [-cchar] < passwd > assign`: see local::tools::pw2u.
use local::tools::pw2u::{convert, Homes, Options};
use qmail::getopt::{Getopt, Opt};
use std::os::unix::ffi::OsStrExt;

const PROG: &str = "qmail-pw2u";

fn main() {
    let mut opts = Options::default();
    for o in Getopt::new(std::env::args_os().skip(1).collect(), "/ohHuUc:C") {
        match o {
            Opt::Ok(b'/', _) => opts.slash = true,
            Opt::Ok(b'o', _) => opts.homes = Homes::Skip,
            Opt::Ok(b'h', _) => opts.homes = Homes::Stop,
            Opt::Ok(b'H', _) => opts.homes = Homes::Ignore,
            Opt::Ok(b'u', _) => opts.upper = true,
            Opt::Ok(b'U', _) => opts.upper = false,
            Opt::Ok(b'c', Some(c)) => opts.brk = c.as_bytes().first().copied(),
            Opt::Ok(b'C', _) => opts.brk = None,
            // qmail-pw2u says nothing but getopt's complaint.
            bad => {
                if let Some(c) = bad.complaint() {
                    eprintln!("{PROG}: {c}");
                }
                std::process::exit(qmail::exit::PERMANENT);
            }
        }
    }
    let users = qmail::home::home().join("users");
    let stdin = std::io::stdin().lock();
    if let Err(f) = convert(&opts, &users, stdin, std::io::stdout().lock()) {
        f.die(PROG);
    }
}
