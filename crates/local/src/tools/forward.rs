//! forward(1): `forward address ...` queues the message on standard input for the
//! addresses, with `$NEWSENDER` (the sender qmail-local chose for forwards) as the
//! envelope sender and `$DTLINE` in front, as a `&address` line of the .qmail file
//! would. On success it says `forward: qp N` and exits 0; a refusal by the queue is
//! 100 when permanent, 111 when not.

use qmail::exit::Failure;
use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Queues `message` for `addresses`; returns the queue program's pid.
pub fn run(home: &Path, addresses: &[OsString], message: impl Read) -> Result<u32, Failure> {
    let sender = super::env_bytes("NEWSENDER").ok_or_else(|| Failure::perm("NEWSENDER not set"))?;
    let dtline = super::env_bytes("DTLINE").ok_or_else(|| Failure::perm("DTLINE not set"))?;
    let to: Vec<&[u8]> = addresses.iter().map(|a| a.as_bytes()).collect();
    super::queue(home, &dtline, message, &sender, &to)
}
