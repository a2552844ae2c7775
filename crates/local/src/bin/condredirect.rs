//! `condredirect newaddress program [arg ...]`: see local::tools::condredirect.
use local::tools::condredirect::{run, Outcome};
use std::os::fd::AsFd;

const PROG: &str = "condredirect";

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.len() < 2 {
        qmail::exit::usage(PROG, "condredirect newaddress program [ arg ... ]");
    }
    // A second descriptor of the message file: it shares fd 0's offset.
    let message = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .unwrap_or_else(|e| qmail::exit::Failure::io("unable to rewind", &e).die(PROG));
    match run(&qmail::home::home(), &args[0], &args[1..], message) {
        Ok(Outcome::Kept) => {}
        Ok(Outcome::Redirected(qp)) => {
            eprintln!("condredirect: qp {qp}");
            std::process::exit(99);
        }
        Err(f) => f.die(PROG),
    }
}
