//! qmail-qstat: see send::qstat.
fn main() {
    let q = qmail::home::home().join("queue");
    match send::qstat::report(&q) {
        Ok(text) => print!("{text}"),
        Err(e) => qmail::exit::die(
            "qmail-qstat",
            111,
            &format!("unable to read {}: {}", q.display(), qmail::errstr::io_str(&e)),
        ),
    }
}
