//! `qmail-mkqueue [-c] [home]`: see send::mkqueue.
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
    let wrong = send::mkqueue::load_ids(&home)
        .and_then(|ids| send::mkqueue::run(&home, &ids, check_only))
        .unwrap_or_else(|f| f.die(PROG));
    for problem in &wrong {
        qmail::exit::warn(PROG, "wrong", problem);
    }
    if !wrong.is_empty() {
        std::process::exit(qmail::exit::PERMANENT);
    }
}
