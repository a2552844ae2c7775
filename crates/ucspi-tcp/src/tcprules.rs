//! tcprules: compile a rules file on stdin into a CDB, atomically.
//!
//! `tcprules rules.cdb rules.tmp < rules`: records go to `rules.tmp`, which is
//! fsynced and renamed over `rules.cdb` (and the directory fsynced), so a tcpserver
//! reading the CDB sees the old or the new rules, never a mix, even across a crash.
//! A bad line stops everything with its line number and reason, exit 100; the old CDB
//! is untouched and the temporary file removed.
//!
//! Of two records with the same key, tcpserver takes the first. For 0.88's own lines
//! that is the first line, and the CDB is byte for byte Debian's. A CIDR block that
//! expands to several keys (`10.0.0.0/25`: 128 exact addresses) is less specific than
//! any other line with one of those keys (`10.0.0.13:deny`), and than a longer block;
//! its records are therefore written after every other line's, longest blocks first,
//! so that the more specific rule wins whatever the order of the lines, in Debian's
//! tcpserver too. (A block with one key, `/24` or `/32`, is written in place: it is
//! the same rule as its key written plainly.)

use crate::rulefile::{self, trimmed};
use qmail::exit::Failure;
use std::fs::{self, File};
use std::io::{self, BufRead};
use std::path::Path;

/// Compiles `input` into `cdb` by way of `tmp`.
pub fn compile(input: impl BufRead, cdb: &Path, tmp: &Path) -> Result<(), Failure> {
    let tmp_shown = tmp.display();
    let file = File::create(tmp).map_err(|e| Failure::io(format_args!("unable to create {tmp_shown}"), &e))?;
    let result = write_records(input, file, tmp).and_then(|()| {
        fs::rename(tmp, cdb)
            .map_err(|e| Failure::io(format_args!("unable to move {tmp_shown} to {}", cdb.display()), &e))?;
        sync_dir(cdb).map_err(|e| Failure::io("unable to sync directory", &e))
    });
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

fn write_records(mut input: impl BufRead, file: File, tmp: &Path) -> Result<(), Failure> {
    let write_err = |e: io::Error| Failure::io(format_args!("unable to write to {}", tmp.display()), &e);
    let mut db = cdb2::CDBMake::new(file).map_err(write_err)?;
    let mut line = Vec::with_capacity(256);
    let mut data = Vec::with_capacity(256);
    let mut number = 0u64;
    let mut blocks: Vec<(u32, Vec<Vec<u8>>, Vec<u8>)> = Vec::new();
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .map_err(|e| Failure::io("unable to read input", &e))?
            == 0
        {
            break;
        }
        number += 1;
        let keys = rulefile::parse_line(&line, &mut data).map_err(|why| {
            Failure::perm(format!(
                "unable to parse this line: {}: line {number}: {}",
                String::from_utf8_lossy(trimmed(&line)),
                why.0
            ))
        })?;
        match keys {
            rulefile::Keys::Block { keys, len } if keys.len() > 1 => blocks.push((len, keys, data.clone())),
            keys => {
                for key in keys.iter() {
                    db.add(key, &data).map_err(write_err)?;
                }
            }
        }
    }
    // Stable: among blocks of one length (the same block twice), the first line wins.
    blocks.sort_by_key(|b| std::cmp::Reverse(b.0));
    for (_, keys, data) in &blocks {
        for key in keys {
            db.add(key, data).map_err(write_err)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use qmail::rules::{lookup, Client};

    fn denied(rules: &str, ip: &str) -> bool {
        let dir = std::env::temp_dir().join(format!("tcprules-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let (cdb, tmp) = (dir.join("r.cdb"), dir.join("r.tmp"));
        compile(rules.as_bytes(), &cdb, &tmp).unwrap();
        let client = Client {
            ip,
            host: None,
            info: None,
        };
        let rule = lookup(&cdb, &client).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        rule.is_some_and(|r| r.denies())
    }

    #[test]
    fn more_specific_wins_over_a_block_in_any_order() {
        // (rules, an address the more specific line denies, one only the block allows)
        for (rules, deny, allow) in [
            ("10.0.0.0/25:allow\n10.0.0.13:deny\n", "10.0.0.13", "10.0.0.12"),
            ("10.0.0.13:deny\n10.0.0.0/25:allow\n", "10.0.0.13", "10.0.0.12"),
            ("10.0.0.0/25:allow\n10.0.0.0/28:deny\n", "10.0.0.13", "10.0.0.16"),
            ("10.0.0.0/28:deny\n10.0.0.0/25:allow\n", "10.0.0.13", "10.0.0.16"),
            ("10.0.0.0/20:allow\n10.0.0.:deny\n", "10.0.0.13", "10.0.1.13"),
            ("10.0.0.0/20:allow\n10.0.0.0/22:deny\n", "10.0.3.13", "10.0.4.13"),
        ] {
            assert!(denied(&format!("{rules}:deny\n"), deny), "{rules}");
            assert!(!denied(&format!("{rules}:deny\n"), allow), "{rules}");
        }
        // The same block twice: the first line, as for any two equal lines.
        assert!(!denied("10.0.0.0/25:allow\n10.0.0.0/25:deny\n", "10.0.0.13"));
        assert!(denied("10.0.0.0/25:deny\n10.0.0.0/25:allow\n", "10.0.0.13"));
    }
}
