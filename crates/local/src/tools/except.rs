//! except(1): `except program [arg ...]` reverses program's exit code for a .qmail
//! line: 0 becomes 100 (bounce), 111 stays 111, anything else becomes 0.

use super::Answer;
use qmail::exit::Failure;
use std::ffi::OsString;

/// except's exit code.
pub fn run(program: &[OsString]) -> Result<i32, Failure> {
    Ok(match super::ran(program)? {
        Answer::Yes => qmail::exit::PERMANENT,
        Answer::No => 0,
    })
}
