//! sendmail (and mailq): see inject::sendmail.
use inject::sendmail::{exec, plan, Refused, USAGE};

const PROG: &str = "sendmail";

fn main() {
    let mut args = std::env::args_os();
    let argv0 = args
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    match plan(&argv0, args.collect(), std::env::var_os("PROTO").is_some()) {
        Ok(p) => exec(&qmail::home::home(), p).die(PROG),
        Err(Refused::Usage(opt)) => qmail::exit::bad_option(PROG, &opt, USAGE),
        Err(Refused::Fatal(f)) => f.die(PROG),
    }
}
