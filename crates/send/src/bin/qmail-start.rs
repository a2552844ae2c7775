//! qmail-start: starts qmail-send and its helpers, each under its own user.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(send::spawn::start::main(&args))
}
