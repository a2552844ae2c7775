//! Every failure is temporary (try again later) or permanent; nothing in between.

/// Exit code for a failure that may go away (qmail's 111).
pub const TEMPORARY: i32 = 111;
/// Exit code for a failure that will not (qmail's 100), and for usage errors.
pub const PERMANENT: i32 = 100;

/// Writes `prog: fatal: msg` on stderr and exits with `code`.
pub fn die(prog: &str, code: i32, msg: &str) -> ! {
    warn(prog, "fatal", msg);
    std::process::exit(code)
}

/// Writes `prog: usage: text` on stderr and exits 100, as djb's programs do.
pub fn usage(prog: &str, text: &str) -> ! {
    warn(prog, "usage", text);
    std::process::exit(PERMANENT)
}

/// Writes `prog: kind: msg` on stderr in one write, so lines from several processes
/// sharing a log pipe never interleave.
pub fn warn(prog: &str, kind: &str, msg: &str) {
    use std::io::Write;
    let line = format!("{prog}: {kind}: {msg}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// For a refused command line: getopt's complaint, if any, then the usage line.
pub fn bad_option(prog: &str, opt: &crate::getopt::Opt, text: &str) -> ! {
    if let Some(c) = opt.complaint() {
        let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("{prog}: {c}\n").as_bytes());
    }
    usage(prog, text)
}
