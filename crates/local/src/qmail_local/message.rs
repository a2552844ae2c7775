//! The message: qmail-lspawn gives qmail-local its queue file on fd 0, a seekable
//! file that every delivery rewinds and reads in small chunks (never whole: a
//! message may be far larger than the memory limit qmail-local runs under).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, FromRawFd, RawFd};

use qmail::exit::Failure;

/// The size of every read of the message.
pub const CHUNK: usize = 16384;

pub struct Message {
    file: ManuallyDrop<File>,
}

impl Message {
    /// fd 0, which stays open for the programs that inherit it.
    pub fn stdin() -> Message {
        // SAFETY: fd 0 is this process's; ManuallyDrop never closes it.
        Message {
            file: ManuallyDrop::new(unsafe { File::from_raw_fd(0) }),
        }
    }

    /// A message in `file` (tests).
    pub fn from_file(file: File) -> Message {
        Message {
            file: ManuallyDrop::new(file),
        }
    }

    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// A second descriptor for the same open file (sharing its offset), to be a
    /// program's stdin.
    pub fn share(&self) -> io::Result<File> {
        self.file.try_clone()
    }

    /// Back to the first byte, before each delivery.
    pub fn rewind(&mut self) -> Result<(), Failure> {
        self.file
            .seek(SeekFrom::Start(0))
            .map(|_| ())
            .map_err(|_| Failure::temp("Unable to rewind message. (#4.3.0)"))
    }

    /// The next bytes; 0 at the end. EINTR is retried.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.file.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    /// qmail's loop check: is `line` (with its LF) one of the header's lines, byte for
    /// byte? The header ends at the first line of at most one byte (the empty line),
    /// or at a last line without LF.
    pub fn header_has_line(&mut self, line: &[u8]) -> Result<bool, Failure> {
        self.rewind()?;
        let mut buf = vec![0; CHUNK];
        let (mut len, mut same) = (0usize, true);
        loop {
            let n = self
                .read(&mut buf)
                .map_err(|e| Failure::temp(format!("Unable to read message: {}. (#4.3.0)", super::err_text(&e))))?;
            if n == 0 {
                return Ok(false);
            }
            for &c in &buf[..n] {
                same = same && line.get(len) == Some(&c);
                len += 1;
                if c == b'\n' {
                    if len <= 1 {
                        return Ok(false);
                    }
                    if same && len == line.len() {
                        return Ok(true);
                    }
                    (len, same) = (0, true);
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) fn message(bytes: &[u8]) -> Message {
    use std::io::Write;
    let mut f = tempfile();
    f.write_all(bytes).unwrap();
    Message::from_file(f)
}

/// An unlinked temporary file (tests).
#[cfg(test)]
pub(crate) fn tempfile() -> File {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let p = std::env::temp_dir().join(format!(
        "rqmail-local-msg-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&p)
        .unwrap();
    std::fs::remove_file(&p).unwrap();
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    const DT: &[u8] = b"Delivered-To: joe@example.org\n";

    #[test]
    fn loop_check_reads_the_header_only() {
        assert!(message(b"Received: x\nDelivered-To: joe@example.org\n\nbody\n")
            .header_has_line(DT)
            .unwrap());
        // In the body, with other case, as a prefix of a longer line, or without LF.
        for m in [
            &b"Received: x\n\nDelivered-To: joe@example.org\n"[..],
            b"delivered-to: joe@example.org\n\n",
            b"Delivered-To: joe@example.org.uk\n\n",
            b"Delivered-To: joe@example.org",
            b"X: y\nDelivered-To: joe@example.or\n\n",
            b"",
        ] {
            assert!(
                !message(m).header_has_line(DT).unwrap(),
                "{:?}",
                String::from_utf8_lossy(m)
            );
        }
        // A header longer than one read.
        let mut m = vec![];
        for i in 0..5000 {
            m.extend_from_slice(format!("X-Long-{i}: yyyyyyyyyy\n").as_bytes());
        }
        m.extend_from_slice(DT);
        assert!(message(&m).header_has_line(DT).unwrap());
    }
}
