//! Which `.qmail` file an address selects, as dot-qmail(5) and qmail-local(8) say:
//! `.qmail` + dash + the extension lowercased with every `.` made `:` (so an
//! extension chosen by a remote sender can never spell `..`); when that file does not
//! exist, the `-default` files from the longest prefix of the extension that ends at
//! a `-` down to the empty one. qmail-local delivers by it; qmail-smtpd asks it
//! whether an address has a mailbox, so both give one answer.

use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// qmail's conf-patrn: a home or `.qmail` with one of these bits is refused
/// (world-writable; group-writable is allowed, as in qmail).
pub const PATRN: u32 = 0o002;

/// The extension as it appears in file names.
pub fn safe_ext(ext: &[u8]) -> Vec<u8> {
    ext.iter()
        .map(|&c| match c {
            b'.' => b':',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The `.qmail` file that was found, open.
#[derive(Debug)]
pub struct Found {
    pub name: Vec<u8>,
    pub file: File,
    /// The owner-execute bit: the file may only forward.
    pub forward_only: bool,
    /// Where `default` stood in the extension: `$DEFAULT` is the extension from here.
    pub default_at: Option<usize>,
}

/// Why the search cannot say: both mean "try again later".
#[derive(Debug)]
pub enum Unusable {
    /// `name` could not be opened for a reason that may pass (or EPERM, EACCES).
    Open(Vec<u8>, io::Error),
    /// The file found is world-writable.
    Writable,
}

fn name(dash: &[u8], middle: &[u8], tail: &[u8]) -> Vec<u8> {
    [b".qmail", dash, middle, tail].concat()
}

/// qmail's qmeexists: the file if it opens and is a regular file; a directory, a
/// FIFO or a missing file is "not there" (a symlink is followed, as open does); a
/// temporary error, EPERM or EACCES defers the delivery rather than skip the file.
fn open_existing(base: &Path, name: &[u8]) -> Result<Option<(File, bool)>, Unusable> {
    let path = base.join(std::ffi::OsStr::from_bytes(name));
    // O_NONBLOCK: a FIFO of that name must not hang the delivery.
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) => {
            let n = e.raw_os_error().unwrap_or(0);
            if crate::errstr::is_temporary(n) || n == libc::EPERM || n == libc::EACCES {
                return Err(Unusable::Open(name.to_vec(), e));
            }
            return Ok(None);
        }
    };
    let meta = file.metadata().map_err(|e| Unusable::Open(name.to_vec(), e))?;
    if !meta.file_type().is_file() {
        return Ok(None);
    }
    let mode = meta.permissions().mode();
    if mode & PATRN != 0 {
        return Err(Unusable::Writable);
    }
    Ok(Some((file, mode & 0o100 != 0)))
}

/// qmail's qmesearch: the exact name, then the `-default` names, in `base` (the home
/// directory; qmail-local passes `.` after its chdir).
pub fn search(base: &Path, dash: &[u8], safeext: &[u8]) -> Result<Option<Found>, Unusable> {
    let exact = name(dash, safeext, b"");
    if let Some((file, forward_only)) = open_existing(base, &exact)? {
        let default_at = safeext.ends_with(b"default").then(|| safeext.len() - 7);
        return Ok(Some(Found {
            name: exact,
            file,
            forward_only,
            default_at,
        }));
    }
    for i in (0..=safeext.len()).rev() {
        if i == 0 || safeext[i - 1] == b'-' {
            let n = name(dash, &safeext[..i], b"default");
            if let Some((file, forward_only)) = open_existing(base, &n)? {
                return Ok(Some(Found {
                    name: n,
                    file,
                    forward_only,
                    default_at: Some(i),
                }));
            }
        }
    }
    Ok(None)
}
