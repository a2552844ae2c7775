//! qmail-smtpd: see smtpd.
fn main() {
    smtpd::main(std::env::args_os().skip(1).collect())
}
