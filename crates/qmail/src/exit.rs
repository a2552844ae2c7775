//! Every failure is temporary (try again later) or permanent; nothing in between.

/// Exit code for a failure that may go away (qmail's 111).
pub const TEMPORARY: i32 = 111;
/// Exit code for a failure that will not (qmail's 100), and for usage errors.
pub const PERMANENT: i32 = 100;

/// A failure, and whether trying again later may help: qmail's two kinds, and no
/// third. Programs return it from their library code; `main` ends with [`Failure::die`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// True if trying again cannot help (exit 100, a 5xx reply); false if it may
    /// (exit 111, a 4xx reply).
    pub permanent: bool,
    /// What went wrong, without the `prog: fatal: ` in front.
    pub text: String,
}

impl Failure {
    /// A failure that may go away: a resource, a read or write, a program that did not run.
    pub fn temp(text: impl Into<String>) -> Failure {
        Failure {
            permanent: false,
            text: text.into(),
        }
    }

    /// A failure that will not go away: bad input, a usage error, a refusal.
    pub fn perm(text: impl Into<String>) -> Failure {
        Failure {
            permanent: true,
            text: text.into(),
        }
    }

    /// `what: error` with djb's short text for the error; temporary, as every IO error is.
    pub fn io(what: impl std::fmt::Display, e: &std::io::Error) -> Failure {
        Failure::temp(format!("{what}: {}", crate::errstr::io_str(e)))
    }

    /// The exit code: [`PERMANENT`] or [`TEMPORARY`].
    pub fn code(&self) -> i32 {
        if self.permanent {
            PERMANENT
        } else {
            TEMPORARY
        }
    }

    /// Writes `prog: fatal: text` on stderr and exits with [`Failure::code`].
    pub fn die(&self, prog: &str) -> ! {
        die(prog, self.code(), &self.text)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_decides_the_code() {
        assert_eq!(Failure::temp("read error").code(), 111);
        assert_eq!(Failure::perm("no recipients").code(), 100);
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        let f = Failure::io("unable to read /x", &e);
        assert_eq!(f, Failure::temp("unable to read /x: file does not exist"));
        assert_eq!(f.to_string(), "unable to read /x: file does not exist");
    }
}
