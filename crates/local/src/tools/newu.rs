//! qmail-newu(8): `users/assign` into `users/cdb`, the table qmail-lspawn reads.
//!
//! qmail-users(5)'s lines, up to the one that starts with `.`:
//!
//! - `=local:user:uid:gid:home:dash:ext:` becomes key `!` + lowercase(local) + NUL;
//! - `+prefix:user:uid:gid:home:dash:pre:` becomes key `!` + lowercase(prefix);
//!
//! each with the six fields after the key, NUL-separated, as data (what follows the
//! sixth colon is ignored), in file order so that the first of two equal keys wins.
//! The empty key holds the last characters of the non-empty `+` prefixes, each once
//! in order of appearance: qmail-lspawn tries a prefix only when it ends in one.
//! Only `+` is special as a first character; any other is dropped like `=`. The
//! records and hash tables are laid out as qmail's cdbmake does, so the file is
//! byte for byte the one qmail's qmail-newu writes from the same assign file.
//!
//! A line without its newline (the end of the file before the `.` line), with a NUL,
//! with no key or fewer than seven colons is refused: nothing is renamed, the old
//! `users/cdb` stays, and the temporary file is removed. Exit 111 on every failure,
//! as qmail's.

use qmail::exit::Failure;
use std::fs::{self, File};
use std::io::{self, BufRead};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// One parsed assign line: the cdb key, the data, and for a `+` line the character
/// the prefix ends with.
#[derive(Debug, PartialEq, Eq)]
pub struct Record {
    pub key: Vec<u8>,
    pub data: Vec<u8>,
    pub wild: Option<u8>,
}

/// Parses `line`, its newline included; None if it is malformed.
pub fn parse(line: &[u8]) -> Option<Record> {
    let body = line.strip_suffix(b"\n")?;
    if body.contains(&0) {
        return None;
    }
    let colon = body.iter().position(|&b| b == b':')?;
    if colon == 0 {
        return None;
    }
    let mut key = b"!".to_vec();
    key.extend_from_slice(&body[1..colon]);
    let wild = if body[0] == b'+' {
        // The character as written, not lowercased (qmail-newu.c does the same).
        (colon >= 2).then(|| body[colon - 1])
    } else {
        key.push(0);
        None
    };
    key.make_ascii_lowercase();
    let fields: Vec<&[u8]> = body[colon + 1..].splitn(7, |&b| b == b':').collect();
    if fields.len() < 7 {
        return None;
    }
    let data = fields[..6].join(&0u8);
    Some(Record { key, data, wild })
}

/// Builds `home/users/cdb` from `home/users/assign`.
pub fn run(home: &Path) -> Result<(), Failure> {
    let users = home.join("users");
    let assign = File::open(users.join("assign")).map_err(|e| Failure::io("unable to open users/assign", &e))?;
    compile(io::BufReader::new(assign), &users.join("cdb"), &users.join("cdb.tmp"))
}

/// Compiles assign lines from `input` into `cdb` by way of `tmp`.
pub fn compile(input: impl BufRead, cdb: &Path, tmp: &Path) -> Result<(), Failure> {
    let file = File::create(tmp).map_err(|e| Failure::io("unable to open users/cdb.tmp", &e))?;
    let result = write(input, file, tmp).and_then(|()| {
        fs::rename(tmp, cdb).map_err(|e| Failure::io("unable to move users/cdb.tmp to users/cdb", &e))?;
        // The rename is durable only once the directory is.
        let dir = cdb
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Failure::io("unable to sync users/", &e))
    });
    if result.is_err() {
        let _ = fs::remove_file(tmp);
    }
    result
}

fn write(mut input: impl BufRead, file: File, tmp: &Path) -> Result<(), Failure> {
    let write_err = |e: io::Error| Failure::io("unable to write users/cdb.tmp", &e);
    // qmail-newu runs with umask 033.
    file.set_permissions(fs::Permissions::from_mode(0o644))
        .map_err(write_err)?;
    let mut db = cdb2::CDBMake::new(file).map_err(write_err)?;
    let mut wildchars = Vec::new();
    let mut line = Vec::with_capacity(256);
    let mut number = 0u64;
    loop {
        line.clear();
        input
            .read_until(b'\n', &mut line)
            .map_err(|e| Failure::io("unable to read users/assign", &e))?;
        number += 1;
        if line.first() == Some(&b'.') {
            break;
        }
        let Some(r) = parse(&line) else {
            let why = if line.is_empty() {
                "no . line at the end".to_string()
            } else {
                format!("line {number}")
            };
            return Err(Failure::temp(format!("bad format in users/assign: {why}")));
        };
        if let Some(c) = r.wild.filter(|c| !wildchars.contains(c)) {
            wildchars.push(c);
        }
        db.add(&r.key, &r.data).map_err(write_err)?;
    }
    db.add(b"", &wildchars).map_err(write_err)?;
    db.finish().map_err(write_err)?;
    // CDBMake flushes but cannot fsync; any descriptor of the file can.
    File::open(tmp).and_then(|f| f.sync_all()).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &[u8], data: &[u8], wild: Option<u8>) -> Option<Record> {
        Some(Record {
            key: key.to_vec(),
            data: data.to_vec(),
            wild,
        })
    }

    #[test]
    fn lines_as_qmail_users_5_describes_them() {
        assert_eq!(
            parse(b"=Joe.Shmoe:joe:503:78:/home/joe:::\n"),
            rec(b"!joe.shmoe\0", b"joe\x00503\x0078\0/home/joe\0\0", None)
        );
        assert_eq!(
            parse(b"+Joe-:joe:507:100:/home/joe:-::\n"),
            rec(b"!joe-", b"joe\x00507\x00100\0/home/joe\0-\0", Some(b'-'))
        );
        // The catch-all: key "!" and no wildcard character.
        assert_eq!(
            parse(b"+:alias:7790:7781:/var/qmail/alias:-::\n"),
            rec(b"!", b"alias\x007790\x007781\0/var/qmail/alias\0-\0", None)
        );
        // Past the sixth colon is ignored; the first character is dropped whatever it is.
        assert_eq!(
            parse(b"=a:u:1:2:/h:-:x:junk:more\n"),
            rec(b"!a\0", b"u\x001\x002\0/h\0-\0x", None)
        );
        assert_eq!(parse(b"xAB:u:1:2:/h:::\n"), rec(b"!ab\0", b"u\x001\x002\0/h\0\0", None));
        // The wildcard character keeps its case.
        assert_eq!(parse(b"+A-X:u:1:2:/h:-::\n").unwrap().wild, Some(b'X'));
    }

    #[test]
    fn malformed_lines_are_refused() {
        for line in [
            &b"=joe:joe:503:78:/home/joe:::"[..], // no newline
            b"=joe:joe:503:78:/home/joe::\n",     // one colon short
            b":joe:503:78:/home/joe:::\n",        // no key
            b"=joe\n",
            b"\n",
            b"=jo\0e:joe:503:78:/home/joe:::\n",
        ] {
            assert_eq!(parse(line), None, "{line:?}");
        }
    }

    #[test]
    fn a_bad_file_keeps_the_old_cdb() {
        let d = std::env::temp_dir().join(format!("rqmail-newu-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let (cdb, tmp) = (d.join("cdb"), d.join("cdb.tmp"));
        compile(&b"=a:a:1:1:/a:::\n.\n"[..], &cdb, &tmp).unwrap();
        let good = fs::read(&cdb).unwrap();
        let db = qmail::cdb::Cdb::open(&cdb).unwrap().unwrap();
        assert_eq!(db.get(b"!a\0").unwrap().unwrap(), b"a\x001\x001\0/a\0\0");
        assert_eq!(db.get(b"").unwrap().unwrap(), b"");
        for bad in [&b"=a:a:1:1:/a:::\n"[..], b"=a:a:1:1:/a:::\n=b:b\n.\n", b""] {
            let f = compile(bad, &cdb, &tmp).unwrap_err();
            assert!(
                !f.permanent && f.text.starts_with("bad format in users/assign: "),
                "{f}"
            );
            assert_eq!(fs::read(&cdb).unwrap(), good);
            assert!(!tmp.exists());
        }
        // The . line needs no newline, and anything after it is ignored.
        compile(
            &b"+x-:x:1:1:/x:-::\n+y=:y:1:1:/y:-::\n+z-:z:1:1:/z:-::\n.junk"[..],
            &cdb,
            &tmp,
        )
        .unwrap();
        let db = qmail::cdb::Cdb::open(&cdb).unwrap().unwrap();
        assert_eq!(db.get(b"").unwrap().unwrap(), b"-=");
        fs::remove_dir_all(&d).unwrap();
    }
}
