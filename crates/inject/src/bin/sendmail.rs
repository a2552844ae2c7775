//! sendmail (and mailq): see inject::sendmail.
use inject::sendmail::{plan, Refused, USAGE};

const PROG: &str = "sendmail";

fn main() {
    let mut args = std::env::args_os();
    let argv0 = args
        .next()
        .map(|a| a.to_string_lossy().into_owned())
        .unwrap_or_default();
    let plan = match plan(&argv0, args.collect(), std::env::var_os("PROTO").is_some()) {
        Ok(p) => p,
        Err(Refused::Usage(opt)) => qmail::exit::bad_option(PROG, &opt, USAGE),
        Err(Refused::Newaliases) => qmail::exit::die(PROG, 100, "please use fastforward/newaliases instead"),
    };
    let home = qmail::home::home();
    let mut env = qmail::env::Env::inherited();
    for (name, value) in &plan.env {
        env.set_or_unset(name, value.as_ref());
    }
    let mut argv = vec![home.join(plan.program).into_os_string()];
    argv.extend(plan.args);
    let err = env.exec(&argv);
    let name = plan.program.trim_start_matches("bin/");
    qmail::exit::die(
        PROG,
        111,
        &format!("unable to run {name}: {}", qmail::errstr::io_str(&err)),
    );
}
