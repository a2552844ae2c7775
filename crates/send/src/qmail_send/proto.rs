//! The pipes to qmail-lspawn/qmail-rspawn and qmail-clean, as qmail-send speaks
//! them (qmail's spawn.c and qmail-clean.c are the other ends).
//!
//! To a spawn: `slot messid NUL sender NUL recipient NUL`, slot one byte, messid
//! `S/N`. From a spawn: `slot K|Z|D text NUL`; since slot 0 is a NUL byte, a NUL
//! ends a report only when it is not the report's first byte. To qmail-clean:
//! `foop/N NUL` or `todo/N NUL`, answered by one byte, `+` for done.

/// A report longer than this is cut (qmail's REPORTMAX): a spawn is trusted to
/// keep them short, but not that far.
pub const REPORTMAX: usize = 10000;

/// One delivery command.
pub fn command(slot: u8, id: u64, sender: &[u8], recip: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(sender.len() + recip.len() + 24);
    v.push(slot);
    v.extend_from_slice(format!("{}/{id}", id % qmail::queuedir::SPLIT).as_bytes());
    v.push(0);
    v.extend_from_slice(sender);
    v.push(0);
    v.extend_from_slice(recip);
    v.push(0);
    v
}

/// A whole report: the slot, the letter (any byte; only K, Z, D mean something)
/// and the text without its NUL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub slot: u8,
    pub letter: u8,
    pub text: Vec<u8>,
}

/// Reassembles reports from whatever pieces the pipe delivers.
#[derive(Default, Debug)]
pub struct Reports {
    line: Vec<u8>,
}

impl Reports {
    /// Feeds bytes; returns the reports they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Report> {
        let mut out = Vec::new();
        for &b in bytes {
            if self.line.len() >= REPORTMAX {
                // Keep the length: later bytes overwrite the last one, so the
                // terminating NUL still ends the report.
                self.line.pop();
            }
            self.line.push(b);
            if b == 0 && self.line.len() > 1 {
                let line = std::mem::take(&mut self.line);
                let slot = line[0];
                let letter = line[1];
                let text = if line.len() > 2 {
                    line[2..line.len() - 1].to_vec()
                } else {
                    Vec::new()
                };
                out.push(Report { slot, letter, text });
            }
        }
        out
    }
}

/// A qmail-clean request, NUL included.
pub fn clean_request(kind: &str, id: u64) -> Vec<u8> {
    let mut v = format!("{kind}/{id}").into_bytes();
    v.push(0);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_bytes() {
        assert_eq!(
            command(0, 123456, b"a@b", b"c@d"),
            b"\x0015/123456\0a@b\0c@d\0".to_vec()
        );
        assert_eq!(command(254, 23, b"", b"x@y"), b"\xfe0/23\0\0x@y\0".to_vec());
        assert_eq!(clean_request("todo", 4711), b"todo/4711\0".to_vec());
        assert_eq!(clean_request("foop", 4711), b"foop/4711\0".to_vec());
    }

    #[test]
    fn reports_in_pieces_and_slot_zero() {
        let mut r = Reports::default();
        assert_eq!(r.feed(b"\x00Kdid 0+0+1\n"), vec![]);
        let got = r.feed(b"\0\x03Zlater\0\x01D\0\x02");
        assert_eq!(
            got,
            vec![
                Report {
                    slot: 0,
                    letter: b'K',
                    text: b"did 0+0+1\n".to_vec()
                },
                Report {
                    slot: 3,
                    letter: b'Z',
                    text: b"later".to_vec()
                },
                Report {
                    slot: 1,
                    letter: b'D',
                    text: b"".to_vec()
                },
            ]
        );
        // slot 2 with a NUL for a letter: complete, and mangled
        assert_eq!(
            r.feed(b"\0"),
            vec![Report {
                slot: 2,
                letter: 0,
                text: vec![]
            }]
        );
    }

    #[test]
    fn long_reports_are_cut() {
        let mut r = Reports::default();
        let mut input = vec![7u8, b'D'];
        input.extend(std::iter::repeat_n(b'x', 50_000));
        input.push(0);
        input.extend_from_slice(b"\x08Kok\0");
        let got = r.feed(&input);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].slot, 7);
        assert_eq!(got[0].text.len(), REPORTMAX - 3);
        assert_eq!(
            got[1],
            Report {
                slot: 8,
                letter: b'K',
                text: b"ok".to_vec()
            }
        );
    }
}
