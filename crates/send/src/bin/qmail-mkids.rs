//! qmail-mkids [-1] [-P passwd] [-G group] [home]: see send::mkids.
use qmail::exit::{die, PERMANENT, TEMPORARY};
use qmail::getopt::{Getopt, Opt};
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
    let read = |p: &PathBuf| {
        std::fs::read(p).unwrap_or_else(|e| {
            die(
                PROG,
                TEMPORARY,
                &format!("unable to read {}: {}", p.display(), qmail::errstr::io_str(&e)),
            )
        })
    };
    let ids = if single {
        // One user owns everything: an instance for `make run` without root.
        qmail::ids::Ids::single(nix::unistd::getuid().as_raw(), nix::unistd::getgid().as_raw())
    } else {
        send::mkids::resolve(&read(&passwd), &read(&group)).unwrap_or_else(|missing| {
            let msg = format!("missing {}; create them as INSTALL says", missing.join(", "));
            die(PROG, PERMANENT, &msg)
        })
    };
    if ids.tls().is_none() {
        let msg = format!(
            "no user {}: ucspi-tlsd will not run as root (INSTALL step 7)",
            qmail::ids::TLS_USER
        );
        qmail::exit::warn(PROG, "warning", &msg);
    }
    let path = home.join(qmail::ids::FILE);
    let tmp = path.with_extension("tmp");
    let write = std::fs::create_dir_all(home.join("control"))
        .and_then(|()| std::fs::write(&tmp, ids.format()))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = write {
        die(
            PROG,
            TEMPORARY,
            &format!("unable to write {}: {}", path.display(), qmail::errstr::io_str(&e)),
        );
    }
}
