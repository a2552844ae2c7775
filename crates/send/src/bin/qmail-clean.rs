//! qmail-clean: removes a message's queue files for qmail-send.

fn main() {
    std::process::exit(send::spawn::clean::main())
}
