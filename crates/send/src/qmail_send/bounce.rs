//! Bounces in qmail's format, QSBMF (cr.yp.to/proto/qsbmf.txt): one paragraph per
//! failed recipient collected in `bounce/N`, and, once every recipient of the
//! message is finished, one message to the sender (or, for a bounce that bounced,
//! to doublebounceto@doublebouncehost).
//!
//! QSBMF readers recognise the message by its first line `Hi. This is the`, by
//! paragraphs separated by single blank lines, recipient paragraphs starting with
//! `<address>:` and the break paragraph starting with `-`; so no report may hold a
//! blank line of its own, and none does after [`paragraph`].

/// The paragraph a permanent failure adds to `bounce/N`: `<RECIPIENT>:`, the
/// report (ending in a newline), a blank line. A newline in the recipient becomes
/// `_`; every blank line inside loses its emptiness (the second `\n` of each
/// `\n\n` becomes `/`), exactly as qmail-send's addbounce.
pub fn paragraph(recip: &[u8], report: &[u8]) -> Vec<u8> {
    let mut t = b"<".to_vec();
    t.extend(recip.iter().map(|&b| if b == b'\n' { b'_' } else { b }));
    t.extend_from_slice(b">:\n");
    t.extend_from_slice(report);
    if !report.is_empty() && !report.ends_with(b"\n") {
        t.push(b'\n');
    }
    let mut pos = t.len() as isize - 2;
    while pos > 0 {
        let p = pos as usize;
        if t[p] == b'\n' && t[p - 1] == b'\n' {
            t[p] = b'/';
        }
        pos -= 1;
    }
    t.push(b'\n');
    t
}

pub use qmail::quote::{quote, quote2};

/// What the bounce for a message from `sender` is: its envelope and kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// To the sender, from `<>`.
    Single { recip: Vec<u8> },
    /// The message was a bounce: to doublebounceto, from `#@[]`.
    Double { recip: Vec<u8> },
    /// The message was a double bounce: dropped.
    Triple,
}

/// The sender as a bounce sees it: a VERP sender `owner-@host-@[]` is
/// `owner-@host` again.
pub fn unverp(sender: &[u8]) -> &[u8] {
    // qmail counts the NUL: a sender of 4 bytes or more ending in -@[].
    if sender.len() >= 4 && sender.ends_with(b"-@[]") {
        &sender[..sender.len() - 4]
    } else {
        sender
    }
}

pub fn kind(sender: &[u8], doublebounceto: &[u8]) -> Kind {
    if sender == b"#@[]" {
        Kind::Triple
    } else if sender.is_empty() {
        Kind::Double {
            recip: doublebounceto.to_vec(),
        }
    } else {
        Kind::Single { recip: sender.to_vec() }
    }
}

/// Everything of the bounce message before the copy of the original, which
/// follows at once (its own qmail-queue Received line first). `paragraphs` is
/// `bounce/N` as it is.
pub fn head(date: &str, bouncefrom: &[u8], bouncehost: &[u8], to: &[u8], sender: &[u8], paragraphs: &[u8]) -> Vec<u8> {
    let single = !sender.is_empty();
    let mut m = Vec::new();
    m.extend_from_slice(b"Date: ");
    m.extend_from_slice(date.as_bytes());
    m.extend_from_slice(b"\nFrom: ");
    m.extend_from_slice(&quote(bouncefrom));
    m.push(b'@');
    m.extend_from_slice(bouncehost);
    m.extend_from_slice(b"\nTo: ");
    m.extend_from_slice(&quote2(to));
    m.extend_from_slice(b"\nSubject: failure notice\n\nHi. This is the qmail-send program at ");
    m.extend_from_slice(bouncehost);
    m.extend_from_slice(if single {
        b".\nI'm afraid I wasn't able to deliver your message to the following addresses.\n\
This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
            .as_slice()
    } else {
        b".\nI tried to deliver a bounce message to this address, but the bounce bounced!\n\n".as_slice()
    });
    m.extend_from_slice(paragraphs);
    m.extend_from_slice(if single {
        b"--- Below this line is a copy of the message.\n\n".as_slice()
    } else {
        b"--- Below this line is the original bounce.\n\n".as_slice()
    });
    m.extend_from_slice(b"Return-Path: <");
    m.extend_from_slice(&quote2(sender));
    m.extend_from_slice(b">\n");
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paragraphs() {
        assert_eq!(
            paragraph(b"bob@example.com", b"Sorry, no mailbox here by that name. (#5.1.1)\n"),
            b"<bob@example.com>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n".to_vec()
        );
        // A newline is added; blank lines inside are destroyed; the recipient's
        // newline becomes _.
        assert_eq!(
            paragraph(b"a\nb@c", b"one\n\ntwo\n\n\nthree"),
            b"<a_b@c>:\none\n/two\n//three\n\n".to_vec()
        );
        assert_eq!(paragraph(b"x@y", b""), b"<x@y>:\n\n".to_vec());
        // A report that begins with a blank line keeps the paragraph whole.
        assert_eq!(paragraph(b"x@y", b"\nz\n"), b"<x@y>:\n/z\n\n".to_vec());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote(b"MAILER-DAEMON"), b"MAILER-DAEMON");
        assert_eq!(quote(b"mailer daemon"), b"\"mailer daemon\"");
        assert_eq!(quote(b"a\"b\\c"), b"\"a\\\"b\\\\c\"");
        assert_eq!(quote(b".a"), b"\".a\"");
        assert_eq!(quote(b"a..b"), b"\"a..b\"");
        assert_eq!(quote(b""), b"\"\"");
        assert_eq!(quote2(b""), b"");
        assert_eq!(quote2(b"joe smith@x.org"), b"\"joe smith\"@x.org");
        assert_eq!(quote2(b"a@b@c"), b"\"a@b\"@c");
        assert_eq!(quote2(b"owner-@list.example"), b"owner-@list.example");
        assert_eq!(quote2(b"postmaster"), b"postmaster");
    }

    #[test]
    fn envelopes() {
        assert_eq!(unverp(b"owner-@host-@[]"), b"owner-@host");
        assert_eq!(unverp(b"a@b"), b"a@b");
        assert_eq!(kind(b"a@b", b"pm@x"), Kind::Single { recip: b"a@b".to_vec() });
        assert_eq!(
            kind(b"", b"pm@x"),
            Kind::Double {
                recip: b"pm@x".to_vec()
            }
        );
        assert_eq!(kind(b"#@[]", b"pm@x"), Kind::Triple);
    }

    #[test]
    fn qsbmf_text() {
        let p = paragraph(b"bob@example.com", b"Sorry, no mailbox here by that name. (#5.1.1)\n");
        let m = head(
            "3 Feb 2024 09:05:07 -0000",
            b"MAILER-DAEMON",
            b"mx.example.com",
            b"a@x.org",
            b"a@x.org",
            &p,
        );
        assert_eq!(
            String::from_utf8(m).unwrap(),
            "Date: 3 Feb 2024 09:05:07 -0000\n\
From: MAILER-DAEMON@mx.example.com\n\
To: a@x.org\n\
Subject: failure notice\n\
\n\
Hi. This is the qmail-send program at mx.example.com.\n\
I'm afraid I wasn't able to deliver your message to the following addresses.\n\
This is a permanent error; I've given up. Sorry it didn't work out.\n\
\n\
<bob@example.com>:\n\
Sorry, no mailbox here by that name. (#5.1.1)\n\
\n\
--- Below this line is a copy of the message.\n\
\n\
Return-Path: <a@x.org>\n"
        );
        let m = head(
            "1 Jan 1970 00:00:00 -0000",
            b"MAILER-DAEMON",
            b"h",
            b"postmaster@h",
            b"",
            &p,
        );
        let m = String::from_utf8(m).unwrap();
        assert!(m.contains("To: postmaster@h\n"));
        assert!(m.contains(
            "Hi. This is the qmail-send program at h.\nI tried to deliver a bounce message to this address, but the bounce bounced!\n\n<bob@"
        ));
        assert!(m.ends_with("--- Below this line is the original bounce.\n\nReturn-Path: <>\n"));
    }
}
