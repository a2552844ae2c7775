//! qmail-lspawn: runs qmail-local for qmail-send, as each recipient's user.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(send::spawn::lspawn::main(&args))
}
