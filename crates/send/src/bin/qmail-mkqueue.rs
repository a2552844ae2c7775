//! qmail-mkqueue [-c] [home]: see send::mkqueue.
use qmail::exit::{die, PERMANENT, TEMPORARY};
use qmail::getopt::{Getopt, Opt};
use std::path::PathBuf;

const PROG: &str = "qmail-mkqueue";

fn main() {
    let mut g = Getopt::new(std::env::args_os().skip(1).collect(), "c");
    let mut check_only = false;
    for o in g.by_ref() {
        match o {
            Opt::Ok(b'c', _) => check_only = true,
            bad => qmail::exit::bad_option(PROG, &bad, "qmail-mkqueue [ -c ] [ home ]"),
        }
    }
    let home = g.rest().first().map(PathBuf::from).unwrap_or_else(qmail::home::home);
    let ids = qmail::ids::Ids::load(&home).unwrap_or_else(|e| {
        let msg = format!(
            "unable to read {}: {}",
            home.join(qmail::ids::FILE).display(),
            qmail::errstr::io_str(&e)
        );
        die(PROG, TEMPORARY, &msg)
    });
    if send::mkqueue::big_todo(&home) {
        die(
            PROG,
            PERMANENT,
            "queue/todo is split (big-todo); rqmail reads a flat todo/ only",
        );
    }
    match send::mkqueue::run(&home, &ids, check_only) {
        Ok(wrong) if wrong.is_empty() => {}
        Ok(wrong) => {
            for problem in wrong {
                qmail::exit::warn(PROG, "wrong", &problem);
            }
            std::process::exit(PERMANENT);
        }
        Err((path, e)) => {
            let msg = format!(
                "unable to make {}: {}",
                home.join(path).display(),
                qmail::errstr::io_str(&e)
            );
            die(PROG, TEMPORARY, &msg);
        }
    }
}
