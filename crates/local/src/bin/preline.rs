//! `preline [-dfrDFR] command [arg ...]`: see local::tools::preline.
use local::tools::preline::{head, run, Lines};
use qmail::getopt::{Getopt, Opt};

const PROG: &str = "preline";
const USAGE: &str = "preline cmd [ arg ... ]";

fn main() {
    let mut lines = Lines {
        uf: true,
        rp: true,
        dt: true,
    };
    let mut g = Getopt::new(std::env::args_os().skip(1).collect(), "frdFRD");
    for o in g.by_ref() {
        match o {
            Opt::Ok(b'f', _) => lines.uf = false,
            Opt::Ok(b'r', _) => lines.rp = false,
            Opt::Ok(b'd', _) => lines.dt = false,
            Opt::Ok(b'F', _) => lines.uf = true,
            Opt::Ok(b'R', _) => lines.rp = true,
            Opt::Ok(b'D', _) => lines.dt = true,
            bad => qmail::exit::bad_option(PROG, &bad, USAGE),
        }
    }
    let argv = g.rest();
    let head = match head(lines) {
        Some(h) if !argv.is_empty() => h,
        _ => qmail::exit::usage(PROG, USAGE),
    };
    let head: Vec<&[u8]> = head.iter().map(Vec::as_slice).collect();
    match run(&argv, &head, std::io::stdin().lock()) {
        Ok(code) => std::process::exit(code),
        Err(f) => f.die(PROG),
    }
}
