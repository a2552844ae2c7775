//! Log lines, and the fields in them that hold bytes from outside (a client's user name, an address, a PTR
//! or ident reply): each byte that could end the line or the field becomes `?`, so a
//! hostile value cannot forge a second line or a field of its own, and log
//! analysers (fail2ban, qmailanalog) read exactly the fields the program wrote.

/// Writes `text` and a newline on stderr in one write, so lines from the processes
/// that share a log pipe never interleave. The line can only end here: a CR, LF or
/// NUL inside `text` (an outside value that missed [`field`]) becomes `?`.
pub fn line(text: &str) {
    let mut b: Vec<u8> = text
        .bytes()
        .map(|c| if matches!(c, b'\r' | b'\n' | 0) { b'?' } else { c })
        .collect();
    b.push(b'\n');
    let _ = std::io::Write::write_all(&mut std::io::stderr(), &b);
}

/// `value` made safe for one log field: bytes outside printable ASCII (33..=126),
/// and each byte in `also` (the field's own delimiters), become `?`; more than `max`
/// bytes are cut and `...` is added.
pub fn field(value: &[u8], max: usize, also: &[u8]) -> String {
    safe(value, max, |b| (33..=126).contains(&b) && !also.contains(&b))
}

/// A value shown between `<` and `>` (qmail-smtpd's addresses and AUTH users).
pub fn bracketed(value: &[u8]) -> String {
    field(value, 200, b"<>")
}

/// Text from another program (a queue filter's refusal) for a reply or a log line:
/// spaces stay, every other byte outside printable ASCII becomes `?`.
pub fn text(value: &[u8], max: usize) -> String {
    safe(value, max, |b| (32..=126).contains(&b))
}

fn safe(value: &[u8], max: usize, keep: impl Fn(u8) -> bool) -> String {
    let mut out: String = value
        .iter()
        .take(max)
        .map(|&b| if keep(b) { b as char } else { '?' })
        .collect();
    if value.len() > max {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_bytes_cannot_end_a_line_or_a_field() {
        assert_eq!(field(b"jo:e", 100, b"%:"), "jo?e");
        assert_eq!(field(b"a b%\n", 100, b"%:"), "a?b??");
        assert_eq!(
            bracketed(b"x> ip=1.2.3.4\nqmail-smtpd: auth-success user=<root"),
            "x??ip=1.2.3.4?qmail-smtpd:?auth-success?user=?root"
        );
        assert_eq!(bracketed(b"a\r\0\xe9b"), "a???b");
        assert_eq!(field(&[b'x'; 150], 100, b""), format!("{}...", "x".repeat(100)));
        assert_eq!(text(b"spam found\r\n250 ok", 100), "spam found??250 ok");
    }
}
