//! qmail-send's log lines (qmail-log(5)), byte for byte, because qmailanalog's
//! matchup, isoqlog and home-grown scripts parse them. No timestamp: the logger
//! (splogger, multilog) adds it.
//!
//! Every outside byte goes through [`safe`] (qmail's logsafe): a newline becomes
//! `/`, and every byte below 33, above 126, or `%`, becomes `_`. So no address or
//! report can end a line or start a field of its own.

/// qmail's logsafe.
pub fn safe(s: &[u8]) -> String {
    s.iter()
        .map(|&b| match b {
            b'\n' => '/',
            b'%' => '_',
            33..=126 => b as char,
            _ => '_',
        })
        .collect()
}

pub fn status(used: [u32; 2], max: [u32; 2], exitasap: bool) -> String {
    format!(
        "status: local {}/{} remote {}/{}{}",
        used[0],
        max[0],
        used[1],
        max[1],
        if exitasap { " exitasap" } else { "" }
    )
}

pub fn new_msg(id: u64) -> String {
    format!("new msg {id}")
}

pub fn info_msg(id: u64, bytes: u64, sender: &[u8], qp: u64, uid: u64) -> String {
    format!("info msg {id}: bytes {bytes} from <{}> qp {qp} uid {uid}", safe(sender))
}

pub fn starting(delid: u64, id: u64, channel: usize, recip: &[u8]) -> String {
    let to = if channel == 0 { "local" } else { "remote" };
    format!("starting delivery {delid}: msg {id} to {to} {}", safe(recip))
}

/// The outcome of one delivery, from its report letter.
pub fn delivery(delid: u64, letter: u8, text: &[u8]) -> String {
    match letter {
        b'K' => format!("delivery {delid}: success: {}", safe(text)),
        b'Z' => format!("delivery {delid}: deferral: {}", safe(text)),
        b'D' => format!("delivery {delid}: failure: {}", safe(text)),
        _ => format!("delivery {delid}: report mangled, will defer"),
    }
}

pub fn bounce_msg(id: u64, qp: u32) -> String {
    format!("bounce msg {id} qp {qp}")
}

pub fn end_msg(id: u64) -> String {
    format!("end msg {id}")
}

/// Where the lines go: descriptor 0 in qmail-send, a buffer in tests. Each line is
/// one write, so lines never interleave with another writer's.
pub trait Sink {
    fn line(&mut self, text: &str);
}

/// Descriptor 0, as qmail-start leaves it (the log pipe).
pub struct Fd0;

impl Sink for Fd0 {
    fn line(&mut self, text: &str) {
        let mut b = Vec::with_capacity(text.len() + 1);
        b.extend_from_slice(text.as_bytes());
        b.push(b'\n');
        let mut off = 0;
        while off < b.len() {
            // SAFETY: writing from a live buffer to descriptor 0.
            let n = unsafe { nix::libc::write(0, b[off..].as_ptr().cast(), b.len() - off) };
            if n > 0 {
                off += n as usize;
            } else if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            } else {
                return; // nowhere to complain to
            }
        }
    }
}

impl Sink for Vec<String> {
    fn line(&mut self, text: &str) {
        self.push(text.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_formats() {
        assert_eq!(status([0, 1], [10, 20], false), "status: local 0/10 remote 1/20");
        assert_eq!(status([2, 0], [2, 20], true), "status: local 2/2 remote 0/20 exitasap");
        assert_eq!(new_msg(4711), "new msg 4711");
        assert_eq!(
            info_msg(4711, 312, b"a@b.example", 4710, 1000),
            "info msg 4711: bytes 312 from <a@b.example> qp 4710 uid 1000"
        );
        assert_eq!(info_msg(5, 1, b"", 0, 0), "info msg 5: bytes 1 from <> qp 0 uid 0");
        assert_eq!(
            starting(1, 4711, 0, b"bob@example.com"),
            "starting delivery 1: msg 4711 to local bob@example.com"
        );
        assert_eq!(
            starting(12, 4711, 1, b"c@d"),
            "starting delivery 12: msg 4711 to remote c@d"
        );
        assert_eq!(delivery(1, b'K', b"did 0+0+1\n"), "delivery 1: success: did_0+0+1/");
        assert_eq!(
            delivery(2, b'Z', b"Unable to chdir to maildir. (#4.2.1)\n"),
            "delivery 2: deferral: Unable_to_chdir_to_maildir._(#4.2.1)/"
        );
        assert_eq!(
            delivery(3, b'D', b"192.0.2.1 does not like recipient.\nRemote host said: 550 no such user\nGiving up on 192.0.2.1.\n"),
            "delivery 3: failure: 192.0.2.1_does_not_like_recipient./Remote_host_said:_550_no_such_user/Giving_up_on_192.0.2.1./"
        );
        assert_eq!(delivery(4, b'X', b"whatever"), "delivery 4: report mangled, will defer");
        assert_eq!(bounce_msg(4711, 4800), "bounce msg 4711 qp 4800");
        assert_eq!(end_msg(4711), "end msg 4711");
    }

    #[test]
    fn outside_bytes_cannot_make_lines_or_fields() {
        assert_eq!(safe(b"a\nstatus: exiting"), "a/status:_exiting");
        assert_eq!(safe(b"50%\r\t\x00\x7f\xff!~"), "50______!~");
        assert_eq!(
            starting(1, 2, 1, b"x@y\nend msg 2"),
            "starting delivery 1: msg 2 to remote x@y/end_msg_2"
        );
    }
}
