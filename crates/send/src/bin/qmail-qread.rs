//! qmail-qread: see send::qread.
use qmail::exit::Failure;
use std::io::Write;

fn main() {
    // Setuid qmails: start from our own signal state, not the caller's.
    qmail::signals::sanitize();
    let q = qmail::home::home().join("queue");
    let mut warnings = String::new();
    let listing = send::qread::read(&q, &mut |id| warnings += &format!("warning: trouble with #{id}\n"));
    let mut out = std::io::stdout().lock();
    match listing {
        Ok(text) => {
            let _ = out.write_all(warnings.as_bytes());
            let _ = out.write_all(text.as_bytes());
        }
        Err(e) => {
            // qmail-qread's own form: on stdout, without the program's name.
            let f = Failure::io(format_args!("unable to read {}", q.display()), &e);
            let _ = writeln!(out, "fatal: {f}");
            std::process::exit(f.code());
        }
    }
}
