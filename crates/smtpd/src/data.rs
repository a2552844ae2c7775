//! DATA: the message from the client into qmail-queue. CRLF line ends, the dot line
//! ends the message and dot-stuffing is undone; a bare LF gets qmail's 451 and the
//! connection is closed (https://cr.yp.to/docs/smtplf.html). Received: and
//! Delivered-To: header lines are counted, and 100 or more mean a mail loop.

use qmail::io::{Conn, End};
use qmail::queueclient::Queue;

pub const MAXHOPS: usize = 100;

/// What the body looked like, once the final dot was read.
#[derive(Debug, Default)]
pub struct Body {
    pub bytes: u64,
    pub hops: usize,
    /// Larger than databytes: nothing more was passed on.
    pub too_big: bool,
    pub header_too_big: bool,
}

/// Why DATA stopped before the final dot.
pub enum Stop {
    BareLf,
    End(End),
}

/// Copies the message to `q` until CRLF.CRLF. `limit` is databytes (0: none);
/// `header_limit` bounds the header.
pub fn blast(conn: &mut Conn, q: &mut Queue, limit: u64, header_limit: u64) -> Result<Body, Stop> {
    let mut body = Body::default();
    let mut out: Vec<u8> = Vec::with_capacity(8192);
    // States: 0 in a line, 1 after CRLF, 2 after CRLF '.', 3 after CRLF '.' CR, 4 after CR.
    let mut state = 1u8;
    let mut in_header = true;
    let mut line: Vec<u8> = Vec::with_capacity(16); // the start of a header line
    let mut header_bytes = 0u64;
    let emit = |bytes: &[u8], body: &mut Body, out: &mut Vec<u8>, q: &mut Queue| {
        body.bytes += bytes.len() as u64;
        if limit > 0 && body.bytes > limit {
            body.too_big = true;
        }
        if !body.too_big && !body.header_too_big {
            out.extend_from_slice(bytes);
            if out.len() >= 8192 {
                q.put(out);
                out.clear();
            }
        }
    };
    loop {
        let ch = conn.byte().map_err(Stop::End)?;
        match state {
            0..=2 if ch == b'\n' => return Err(Stop::BareLf),
            0 => {
                if ch == b'\r' {
                    state = 4;
                    continue;
                }
            }
            1 => {
                if ch == b'.' {
                    state = 2;
                    continue;
                }
                if ch == b'\r' {
                    state = 4;
                    continue;
                }
                state = 0;
            }
            2 => {
                if ch == b'\r' {
                    state = 3;
                    continue;
                }
                state = 0;
            }
            3 => {
                if ch == b'\n' {
                    q.put(&out);
                    return Ok(body);
                }
                emit(b".\r", &mut body, &mut out, q);
                if ch == b'\r' {
                    state = 4;
                    continue;
                }
                state = 0;
            }
            _ => {
                if ch == b'\n' {
                    state = 1;
                } else if ch != b'\r' {
                    emit(b"\r", &mut body, &mut out, q);
                    state = 0;
                } else {
                    emit(b"\r", &mut body, &mut out, q);
                    continue;
                }
            }
        }
        // The message stored with LF line ends, as qmail stores it.
        if in_header {
            header_bytes += 1;
            if header_limit > 0 && header_bytes > header_limit {
                body.header_too_big = true;
            }
            if ch == b'\n' {
                if line.is_empty() {
                    in_header = false;
                }
                let l = line.to_ascii_lowercase();
                if l.starts_with(b"received:") || l.starts_with(b"delivered-to:") {
                    body.hops += 1;
                }
                line.clear();
            } else if line.len() < 16 {
                line.push(ch);
            }
        }
        emit(&[ch], &mut body, &mut out, q);
    }
}

/// qmail's character filter for the Received line: anything else becomes `?`.
fn safe(s: &[u8]) -> String {
    s.iter()
        .map(|&c| {
            if c.is_ascii_alphanumeric() || b".@%+/=:-[]".contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

/// `Received: from HOST (HELO helo) (info@IP)\n  by LOCAL with PROTO; DATE\n`
pub fn received(
    remotehost: &[u8],
    helo: Option<&[u8]>,
    info: Option<&[u8]>,
    ip: &[u8],
    local: &[u8],
    proto: &str,
) -> Vec<u8> {
    let mut r = format!("Received: from {}", safe(remotehost));
    if let Some(h) = helo {
        r += &format!(" (HELO {})", safe(h));
    }
    r += " (";
    if let Some(i) = info {
        r += &format!("{}@", safe(i));
    }
    r += &format!(
        "{})\n  by {} with {proto}; {}\n",
        safe(ip),
        safe(local),
        qmail::date822::Utc::now().rfc822()
    );
    r.into_bytes()
}

#[cfg(test)]
mod tests {
    #[test]
    fn received_line() {
        let r = super::received(
            b"unknown",
            Some(b"x y\xe9"),
            Some(b"alice"),
            b"127.0.0.1",
            b"mx.example",
            "ESMTPA",
        );
        let r = String::from_utf8(r).unwrap();
        assert!(r.starts_with("Received: from unknown (HELO x?y?) (alice@127.0.0.1)\n  by mx.example with ESMTPA; "));
        assert!(r.ends_with(" -0000\n"));
    }
}
