//! `qmail-newu`: see local::tools::newu.
fn main() {
    if let Err(f) = local::tools::newu::run(&qmail::home::home()) {
        f.die("qmail-newu");
    }
}
