//! qmail-qstat: see send::qstat.
fn main() {
    match send::qstat::report(&qmail::home::home().join("queue")) {
        Ok(text) => print!("{text}"),
        Err(f) => f.die("qmail-qstat"),
    }
}
