//! tcprules: compile a rules file on stdin into a CDB, atomically.
//!
//! `tcprules rules.cdb rules.tmp < rules`: records go to `rules.tmp`, which is
//! fsynced and renamed over `rules.cdb` (and the directory fsynced), so a tcpserver
//! reading the CDB sees the old or the new rules, never a mix, even across a crash.
//! A bad line stops everything with its line number and reason, exit 100; the old CDB
//! is untouched and the temporary file removed.

use crate::rulefile::{self, trimmed};
use qmail::errstr::io_str;
use qmail::exit::{PERMANENT, TEMPORARY};
use std::fs::{self, File};
use std::io::{self, BufRead};
use std::path::Path;

/// A failure, with its exit code and message (without the `tcprules: fatal: ` prefix).
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

fn temporary(what: &str, e: &io::Error) -> Failure {
    Failure {
        code: TEMPORARY,
        message: format!("{what}: {}", io_str(e)),
    }
}

/// Compiles `input` into `cdb` by way of `tmp`.
pub fn compile(input: impl BufRead, cdb: &Path, tmp: &Path) -> Result<(), Failure> {
    let tmp_shown = tmp.display();
    let file = File::create(tmp).map_err(|e| temporary(&format!("unable to create {tmp_shown}"), &e))?;
    let result = write_records(input, file, tmp).and_then(|()| {
        fs::rename(tmp, cdb).map_err(|e| temporary(&format!("unable to move {tmp_shown} to {}", cdb.display()), &e))?;
        sync_dir(cdb).map_err(|e| temporary("unable to sync directory", &e))
    });
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

fn write_records(mut input: impl BufRead, file: File, tmp: &Path) -> Result<(), Failure> {
    let write_err = |e: io::Error| temporary(&format!("unable to write to {}", tmp.display()), &e);
    let mut db = cdb2::CDBMake::new(file).map_err(write_err)?;
    let mut line = Vec::with_capacity(256);
    let mut data = Vec::with_capacity(256);
    let mut number = 0u64;
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .map_err(|e| temporary("unable to read input", &e))?
            == 0
        {
            break;
        }
        number += 1;
        let keys = rulefile::parse_line(&line, &mut data).map_err(|why| Failure {
            code: PERMANENT,
            message: format!(
                "unable to parse this line: {}: line {number}: {}",
                String::from_utf8_lossy(trimmed(&line)),
                why.0
            ),
        })?;
        for key in keys.iter() {
            db.add(key, &data).map_err(write_err)?;
        }
    }
    db.finish().map_err(write_err)?;
    // CDBMake flushes but cannot fsync; any descriptor of the file can.
    File::open(tmp).and_then(|f| f.sync_all()).map_err(write_err)
}

fn sync_dir(file: &Path) -> io::Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}
