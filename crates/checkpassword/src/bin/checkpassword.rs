//! checkpassword (also installed as vchkpw and cmd5checkpw): see checkpassword::verify.
fn main() {
    // A setuid program keeps whatever signal state its caller chose: undo it first.
    qmail::signals::sanitize();
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_default();
    let rest: Vec<_> = args.collect();
    std::process::exit(checkpassword::verify::run(&argv0, &rest));
}
