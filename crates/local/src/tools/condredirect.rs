//! condredirect(1): `condredirect newaddress program [arg ...]` runs program on the
//! message. If it exits 0, the message goes to newaddress (with `$SENDER` as the
//! envelope sender and `$DTLINE` in front) and condredirect exits 99, so that the
//! rest of the .qmail file is skipped; if it exits 111, so does condredirect (try
//! again later); anything else, or a program that is not there, exits 0 and the
//! .qmail file goes on.

use super::Answer;
use qmail::exit::Failure;
use std::ffi::OsString;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// What condredirect did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The program said no: exit 0.
    Kept,
    /// Forwarded; the queue program's pid. Exit 99.
    Redirected(u32),
}

/// Asks `program` (argv), then forwards `message` (the seekable message file,
/// rewound here) to `newaddress`.
pub fn run(home: &Path, newaddress: &OsString, program: &[OsString], mut message: File) -> Result<Outcome, Failure> {
    if super::ran(program)? == Answer::No {
        return Ok(Outcome::Kept);
    }
    message
        .seek(SeekFrom::Start(0))
        .map_err(|e| Failure::io("unable to rewind", &e))?;
    let sender = super::env_bytes("SENDER").ok_or_else(|| Failure::perm("SENDER not set"))?;
    let dtline = super::env_bytes("DTLINE").ok_or_else(|| Failure::perm("DTLINE not set"))?;
    super::queue(home, &dtline, message, &sender, &[newaddress.as_bytes()]).map(Outcome::Redirected)
}
