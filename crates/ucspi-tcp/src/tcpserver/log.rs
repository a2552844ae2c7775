//! tcpserver's log lines on fd 2, in ucspi-tcp's exact format so that existing log
//! analysers keep parsing them. Each line is one write, so lines from the parent and
//! its children never interleave within a line.

/// Verbosity: 0 prints nothing at all, 1 errors and warnings, 2 everything.
#[derive(Clone, Copy, Debug)]
pub struct Log(pub u8);

impl Log {
    fn line(&self, min: u8, text: &str) {
        if self.0 >= min {
            qmail::log::line(&format!("tcpserver: {text}"));
        }
    }

    /// Status, pid, ok, deny and end lines (`-v`).
    pub fn info(&self, text: &str) {
        self.line(2, text);
    }

    pub fn warning(&self, text: &str) {
        self.line(1, &format!("warning: {text}"));
    }

    pub fn fatal(&self, code: i32, text: &str) -> ! {
        self.line(1, &format!("fatal: {text}"));
        std::process::exit(code)
    }
}

/// A host or ident field as 0.88 logs it: bytes outside 33..=126, `%` and `:` become
/// `?`, and more than 100 bytes are cut with `...`, so a hostile PTR or ident reply
/// cannot forge or split a log line. Unknown values are empty fields.
pub fn field(value: Option<&str>) -> String {
    value.map_or(String::new(), |v| qmail::log::field(v.as_bytes(), 100, b"%:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_made_safe() {
        assert_eq!(field(None), "");
        assert_eq!(field(Some("jo:e")), "jo?e");
        assert_eq!(field(Some("a b%\n")), "a?b??");
        let long = "x".repeat(150);
        assert_eq!(field(Some(&long)), format!("{}...", "x".repeat(100)));
    }
}
