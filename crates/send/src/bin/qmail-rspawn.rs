//! qmail-rspawn: runs qmail-remote for qmail-send.

fn main() {
    std::process::exit(send::spawn::rspawn::main())
}
