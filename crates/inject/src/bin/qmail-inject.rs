//! qmail-inject [-nNaAhH] [-fsender] [recip ...]: see inject::qmail_inject.
use inject::qmail_inject::{run, Options, Recipients};
use qmail::getopt::{Getopt, Opt};

const PROG: &str = "qmail-inject";

fn main() {
    let mut g = Getopt::new(std::env::args_os().skip(1).collect(), "aAhHnNf:");
    let mut opts = Options {
        recipients: Recipients::Default,
        queue: true,
        sender: None,
        args: Vec::new(),
    };
    let mut from = None;
    for o in g.by_ref() {
        match o {
            Opt::Ok(b'a', _) => opts.recipients = Recipients::Args,
            Opt::Ok(b'A', _) => opts.recipients = Recipients::Default,
            Opt::Ok(b'h', _) => opts.recipients = Recipients::Header,
            Opt::Ok(b'H', _) => opts.recipients = Recipients::Both,
            Opt::Ok(b'n', _) => opts.queue = false,
            Opt::Ok(b'N', _) => opts.queue = true,
            Opt::Ok(b'f', Some(s)) => from = Some(s.into_encoded_bytes()),
            bad => qmail::exit::bad_option(PROG, &bad, "qmail-inject [ -nNaAhH ] [ -fsender ] [ recip ... ]"),
        }
    }
    opts.args = g.rest().into_iter().map(|a| a.into_encoded_bytes()).collect();
    let mut stdin = std::io::BufReader::with_capacity(65536, std::io::stdin().lock());
    if let Err(f) = run(&qmail::home::home(), opts, from.as_deref(), &mut stdin) {
        f.die(PROG);
    }
}
