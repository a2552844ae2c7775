//! Control files: one setting per file under `QMAILHOME/control`, as qmail-control(5).
//!
//! A one-line setting is the file's first line with trailing spaces and tabs removed,
//! as qmail's control_readline does. A missing file means "use the default"; any other
//! error is an error, because guessing a default for an unreadable file could, say,
//! open a relay.

use std::io;
use std::path::Path;

/// The first line of `path`, or None if the file does not exist.
pub fn read_line(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(data) => {
            let mut line = data.split(|&b| b == b'\n').next().unwrap_or(b"").to_vec();
            while matches!(line.last(), Some(b' ' | b'\t' | b'\r')) {
                line.pop();
            }
            Ok(Some(line))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// qmail's control_rldef: `control/NAME`, else (when `me_default`) `control/me`,
/// else `default`.
pub fn read_line_or(home: &Path, name: &str, me_default: bool, default: &str) -> io::Result<Vec<u8>> {
    let control = home.join("control");
    if let Some(v) = read_line(&control.join(name))? {
        return Ok(v);
    }
    if me_default {
        if let Some(v) = read_line(&control.join("me"))? {
            return Ok(v);
        }
    }
    Ok(default.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_trimmed_and_defaults() {
        let d = std::env::temp_dir().join(format!("rqmail-control-{}", std::process::id()));
        std::fs::create_dir_all(d.join("control")).unwrap();
        std::fs::write(d.join("control/me"), "mx.example.org\n").unwrap();
        std::fs::write(d.join("control/defaulthost"), "example.org \t\nignored\n").unwrap();
        assert_eq!(
            read_line_or(&d, "defaulthost", true, "defaulthost").unwrap(),
            b"example.org"
        );
        assert_eq!(read_line_or(&d, "idhost", true, "idhost").unwrap(), b"mx.example.org");
        std::fs::remove_file(d.join("control/me")).unwrap();
        assert_eq!(read_line_or(&d, "idhost", true, "idhost").unwrap(), b"idhost");
        assert_eq!(read_line(&d.join("control/none")).unwrap(), None);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
