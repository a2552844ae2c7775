//! `qmail-mkids [-1] [-P passwd] [-G group] [home]`: see send::mkids.
use qmail::getopt::{Getopt, Opt};
use send::mkids::{ids, write, Source};
use std::path::PathBuf;

const PROG: &str = "qmail-mkids";

fn main() {
    let mut g = Getopt::new(std::env::args_os().skip(1).collect(), "1P:G:");
    let (mut single, mut passwd, mut group) = (false, PathBuf::from("/etc/passwd"), PathBuf::from("/etc/group"));
    for o in g.by_ref() {
        match o {
            Opt::Ok(b'1', _) => single = true,
            Opt::Ok(b'P', Some(p)) => passwd = p.into(),
            Opt::Ok(b'G', Some(p)) => group = p.into(),
            bad => qmail::exit::bad_option(PROG, &bad, "qmail-mkids [ -1 ] [ -P passwd ] [ -G group ] [ home ]"),
        }
    }
    let home = g.rest().first().map(PathBuf::from).unwrap_or_else(qmail::home::home);
    let source = match single {
        true => Source::Single {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        },
        false => Source::Files {
            passwd: &passwd,
            group: &group,
        },
    };
    let ids = ids(source).unwrap_or_else(|f| f.die(PROG));
    if ids.tls().is_none() {
        let msg = format!(
            "no user {}: ucspi-tlsd will not run as root (INSTALL step 7)",
            qmail::ids::TLS_USER
        );
        qmail::exit::warn(PROG, "warning", &msg);
    }
    write(&home, &ids).unwrap_or_else(|f| f.die(PROG));
}
