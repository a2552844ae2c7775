//! qmail-local [-nN] user homedir local dash ext domain sender defaultdelivery: see
//! local::qmail_local.
fn main() {
    std::process::exit(local::qmail_local::main(std::env::args_os().skip(1).collect()))
}
