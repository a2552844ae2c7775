//! Finding the `.qmail` file for an address and reading its instructions, as
//! dot-qmail(5) and qmail-local(8) describe them.
//!
//! The selection itself (the name, `-default` files) is `qmail::dotqmail`, shared
//! with qmail-smtpd; this module adds qmail-local's texts, `-owner` and the lines.

use std::io::Read;
use std::path::Path;

use qmail::exit::Failure;

use super::{err_text, is_temp, Invocation};

pub use qmail::dotqmail::{safe_ext, Found};

/// The whole file of a [`Found`] (a user's instructions, small). A file too large
/// to hold is qmail's "Out of memory".
pub fn read(mut found: Found) -> Result<Vec<u8>, Failure> {
    let len = found.file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut text = Vec::new();
    if text.try_reserve_exact(len as usize + 1).is_err() {
        return Err(Failure::temp("Out of memory. (#4.3.0)"));
    }
    found.file.read_to_end(&mut text).map_err(|e| {
        Failure::temp(format!(
            "Unable to read {}: {}. (#4.3.0)",
            String::from_utf8_lossy(&found.name),
            err_text(&e)
        ))
    })?;
    Ok(text)
}

fn name(dash: &[u8], middle: &[u8], tail: &[u8]) -> Vec<u8> {
    [b".qmail", dash, middle, tail].concat()
}

fn unable_to_open(name: &[u8], e: &std::io::Error) -> Failure {
    Failure::temp(format!(
        "Unable to open {}: {}. (#4.3.0)",
        String::from_utf8_lossy(name),
        err_text(e)
    ))
}

/// qmail's qmesearch ([`qmail::dotqmail::search`]) with qmail-local's texts.
pub fn search(base: &Path, dash: &[u8], safeext: &[u8]) -> Result<Option<Found>, Failure> {
    qmail::dotqmail::search(base, dash, safeext).map_err(|u| match u {
        qmail::dotqmail::Unusable::Open(name, e) => unable_to_open(&name, &e),
        qmail::dotqmail::Unusable::Writable => Failure::temp("Uh-oh: .qmail file is writable. (#4.7.0)"),
    })
}

/// qmail's qmeox: does `.qmail{dash}{safeext}{suffix}` exist (stat)? Only a
/// temporary error is an error.
fn exists(base: &Path, dash: &[u8], safeext: &[u8], suffix: &[u8]) -> Result<bool, Failure> {
    let n = name(dash, safeext, suffix);
    match std::fs::metadata(base.join(super::os(&n))) {
        Ok(_) => Ok(true),
        Err(e) if is_temp(e.raw_os_error().unwrap_or(0)) => Err(unable_to_open(&n, &e)),
        Err(_) => Ok(false),
    }
}

/// The envelope sender of forwards (`$NEWSENDER`): the list owner's address when
/// `-owner` exists beside the address's own name, VERP'd when `-owner-default` does
/// too; the sender itself otherwise, and always for a bounce (`""` or `#@[]`).
pub fn new_sender(base: &Path, inv: &Invocation, safeext: &[u8]) -> Result<Vec<u8>, Failure> {
    if inv.sender.is_empty() || inv.sender == b"#@[]" || !exists(base, &inv.dash, safeext, b"-owner")? {
        return Ok(inv.sender.clone());
    }
    let verp = exists(base, &inv.dash, safeext, b"-owner-default")?;
    let mut s = inv.local.clone();
    s.extend_from_slice(if verp { b"-owner-@" } else { b"-owner@" });
    s.extend_from_slice(&inv.host);
    if verp {
        s.extend_from_slice(b"-@[]");
    }
    Ok(s)
}

/// One instruction of a `.qmail` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// An empty line (or one of only spaces and tabs): an error if it is the first.
    Blank,
    Comment,
    /// `./Maildir/`, `/var/mail/x/`: ends in `/`.
    Maildir(&'a [u8]),
    /// `./Mailbox`, `/var/mail/x`.
    Mbox(&'a [u8]),
    /// `|command`: the command, without the `|`.
    Program(&'a [u8]),
    /// `&address` or a bare address.
    Forward(&'a [u8]),
    /// `+list`: forward-only from here on.
    ForwardOnly,
    /// Any other `+` line, ignored.
    Other,
}

/// The instructions of `text` in order: split at LF (a last line without one
/// counts), trailing spaces and tabs removed, leading ones kept. As in qmail's C, a
/// line's argument ends at its first NUL.
pub fn lines(text: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    text.split(|&c| c == b'\n').map(classify)
}

fn classify(line: &[u8]) -> Line<'_> {
    let end = line.iter().rposition(|&c| c != b' ' && c != b'\t').map_or(0, |p| p + 1);
    let line = &line[..end];
    let upto_nul = |s: &[u8]| s.iter().position(|&c| c == 0).map_or(s.len(), |p| p);
    let arg = |from: usize| &line[from..from + upto_nul(&line[from..])];
    match line.first() {
        None | Some(0) => Line::Blank,
        Some(b'#') => Line::Comment,
        Some(b'.' | b'/') if line.ends_with(b"/") => Line::Maildir(arg(0)),
        Some(b'.' | b'/') => Line::Mbox(arg(0)),
        Some(b'|') => Line::Program(arg(1)),
        Some(b'+') if arg(1) == b"list" => Line::ForwardOnly,
        Some(b'+') => Line::Other,
        Some(b'&') => Line::Forward(arg(1)),
        Some(_) => Line::Forward(arg(0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_types() {
        let text = b"# c\n./Maildir/ \t\n/var/mail/joe\n|preline procmail  \n&a@b\n b@c\nc@d\n+list\n+other\n\n&x\0y\n";
        let got: Vec<Line> = lines(text).collect();
        assert_eq!(
            got,
            vec![
                Line::Comment,
                Line::Maildir(b"./Maildir/"),
                Line::Mbox(b"/var/mail/joe"),
                Line::Program(b"preline procmail"),
                Line::Forward(b"a@b"),
                Line::Forward(b" b@c"),
                Line::Forward(b"c@d"),
                Line::ForwardOnly,
                Line::Other,
                Line::Blank,
                Line::Forward(b"x"),
            ]
        );
        // A last line without LF counts; a file of one LF is one blank line.
        assert_eq!(lines(b"./M").collect::<Vec<_>>(), vec![Line::Mbox(b"./M")]);
        assert_eq!(lines(b"\n").collect::<Vec<_>>(), vec![Line::Blank]);
        assert_eq!(lines(b"").collect::<Vec<_>>(), vec![Line::Blank]);
        assert_eq!(lines(b"  \t\n").collect::<Vec<_>>(), vec![Line::Blank]);
        // The Maildir test looks at the trimmed line; the path stops at NUL.
        assert_eq!(lines(b"./M\0x/").collect::<Vec<_>>(), vec![Line::Maildir(b"./M")]);
        assert_eq!(lines(b"+list\0x").collect::<Vec<_>>(), vec![Line::ForwardOnly]);
    }

    #[test]
    fn safe_ext_cannot_spell_dot_dot() {
        assert_eq!(safe_ext(b"Foo.Bar-baz"), b"foo:bar-baz");
        assert_eq!(safe_ext(b"../../etc"), b"::/::/etc");
    }

    fn home(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("rqmail-dotqmail-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn put(d: &Path, n: &str, mode: u32) {
        let p = d.join(n);
        std::fs::write(&p, "./Maildir/\n").unwrap();
        std::fs::set_permissions(
            &p,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(mode),
        )
        .unwrap();
    }

    #[test]
    fn exact_then_defaults_longest_first() {
        let d = home("search");
        let find = |s: &str| -> Option<(String, Option<usize>)> {
            search(&d, b"-", s.as_bytes())
                .unwrap()
                .map(|f| (String::from_utf8(f.name).unwrap(), f.default_at))
        };
        assert_eq!(find("a-b-c"), None);
        put(&d, ".qmail-default", 0o600);
        assert_eq!(find("a-b-c"), Some((".qmail-default".into(), Some(0))));
        put(&d, ".qmail-a-default", 0o600);
        assert_eq!(find("a-b-c"), Some((".qmail-a-default".into(), Some(2))));
        put(&d, ".qmail-a-b-c", 0o600);
        assert_eq!(find("a-b-c"), Some((".qmail-a-b-c".into(), None)));
        // "a-b-": the first default tried is .qmail-a-b-default.
        put(&d, ".qmail-a-b-default", 0o600);
        assert_eq!(find("a-b-"), Some((".qmail-a-b-default".into(), Some(4))));
        // An exact name ending in "default" sets DEFAULT to that word.
        assert_eq!(find("a-default"), Some((".qmail-a-default".into(), Some(2))));
        // A directory is not a .qmail file: the search goes on.
        std::fs::create_dir(d.join(".qmail-dir")).unwrap();
        assert_eq!(find("dir"), Some((".qmail-default".into(), Some(0))));
        // With an empty dash and extension the only default is ".qmaildefault".
        assert_eq!(search(&d, b"", b"").unwrap().map(|f| f.name), None);
        // A world-writable file is refused, a group-writable one is not.
        put(&d, ".qmail-gw", 0o660);
        assert_eq!(find("gw"), Some((".qmail-gw".into(), None)));
        put(&d, ".qmail-ww", 0o602);
        assert_eq!(
            search(&d, b"-", b"ww").unwrap_err(),
            Failure::temp("Uh-oh: .qmail file is writable. (#4.7.0)")
        );
        // The x bit means forward only.
        put(&d, ".qmail-x", 0o700);
        assert!(search(&d, b"-", b"x").unwrap().unwrap().forward_only);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn owner_files_choose_the_forwarding_sender() {
        let d = home("owner");
        let mut inv = crate::qmail_local::tests_support::invocation();
        assert_eq!(new_sender(&d, &inv, b"list").unwrap(), b"bob@example.com");
        put(&d, ".qmail-list-owner", 0o600);
        assert_eq!(new_sender(&d, &inv, b"list").unwrap(), b"joe-list-owner@example.org");
        put(&d, ".qmail-list-owner-default", 0o600);
        assert_eq!(
            new_sender(&d, &inv, b"list").unwrap(),
            b"joe-list-owner-@example.org-@[]"
        );
        for bounce in [&b""[..], b"#@[]"] {
            inv.sender = bounce.to_vec();
            assert_eq!(new_sender(&d, &inv, b"list").unwrap(), bounce);
        }
        std::fs::remove_dir_all(&d).unwrap();
    }
}
