//! bouncesaying(1): `bouncesaying error [program [arg ...]]` bounces the message with
//! `error` as the reason (printed, exit 100) when program exits 0, or always when
//! there is no program. Program exiting 111 is exit 111; anything else, or a program
//! that is not there, is exit 0 and the .qmail file goes on.

use super::Answer;
use qmail::exit::Failure;
use std::ffi::OsString;

/// True when the message is to bounce.
pub fn run(program: &[OsString]) -> Result<bool, Failure> {
    if program.is_empty() {
        return Ok(true);
    }
    Ok(super::ran(program)? == Answer::Yes)
}
