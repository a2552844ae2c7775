//! qmail-send: see send::qmail_send.
fn main() {
    std::process::exit(send::qmail_send::main());
}
