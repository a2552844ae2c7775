//! qmail-pw2u(8): a V7 passwd file on stdin into qmail-users(5) assignments on stdout.
//!
//! Each account `user:password:uid:gid:gecos:home:shell` that qmail-getpw would
//! accept (uid not 0, no uppercase letter, home there and owned by uid: the options
//! change the last three) gets `=user:user:uid:gid:home:::` and, unless extensions are
//! off, `+user-:user:uid:gid:home:-::`; the account named `alias` also gets the
//! catch-all `+:alias:uid:gid:home:-::` before them. In QMAILHOME/users: `include`
//! and `exclude` choose accounts, `mailnames` (`user:name1:name2:...`) replaces an
//! account's names, `subusers` (`sub:user:pre:`) adds addresses, `append` is copied
//! to the end, before the final `.` line. Names in those files match accounts
//! whatever their case; of two `mailnames` lines for one account the last counts.

use qmail::exit::Failure;
use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What to do about a home directory (`-o`, `-h`, `-H`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Homes {
    /// `-o` (default): skip an account whose home is missing or not its own.
    Skip,
    /// `-h`: stop when a home is missing; skip one that is not the account's own.
    Stop,
    /// `-H`: do not look at homes.
    Ignore,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Options {
    pub homes: Homes,
    /// `-u`: accounts with uppercase letters too (`-U`, the default, skips them).
    pub upper: bool,
    /// The user-extension break character (`-cX`); None with `-C`.
    pub brk: Option<u8>,
    /// `-/`: dash `-/` instead of `-`, for `.qmail-/...` file names.
    pub slash: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            homes: Homes::Skip,
            upper: false,
            brk: Some(b'-'),
            slash: false,
        }
    }
}

/// A qmail constmap: case-insensitive keys, the last of equal keys found first.
struct Map(Vec<(Vec<u8>, Vec<u8>)>);

impl Map {
    /// `with_values`: a line is `key:value`, and a line without a colon is ignored.
    fn new(lines: Vec<Vec<u8>>, with_values: bool) -> Map {
        Map(lines
            .into_iter()
            .filter_map(|l| match l.iter().position(|&b| b == b':') {
                Some(i) if with_values => Some((l[..i].to_vec(), l[i + 1..].to_vec())),
                None if with_values => None,
                _ => Some((l, Vec::new())),
            })
            .collect())
    }

    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_slice())
    }
}

/// qmail's control_readfile: the lines of `path` without trailing white space,
/// empty lines and `#` comments; None if it does not exist.
fn read_list(path: &Path) -> Result<Option<Vec<Vec<u8>>>, Failure> {
    let data = match std::fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(_) => return Err(Failure::temp("unable to read controls")),
    };
    let mut lines = Vec::new();
    for mut l in data.split(|&b| b == b'\n') {
        while let [rest @ .., b' ' | b'\t'] = l {
            l = rest;
        }
        if !l.is_empty() && l[0] != b'#' {
            lines.push(l.to_vec());
        }
    }
    Ok(Some(lines))
}

/// The raw lines of `path` (the last one possibly without its newline), or None if
/// it does not exist.
fn open_lines(path: &Path) -> Result<Option<io::BufReader<File>>, Failure> {
    match File::open(path) {
        Ok(f) => Ok(Some(io::BufReader::new(f))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(_) => Err(Failure::temp("unable to read controls")),
    }
}

/// Calls `each` with every line of `input`, the newline included if there is one.
fn for_lines(mut input: impl BufRead, mut each: impl FnMut(&[u8]) -> Result<(), Failure>) -> Result<(), Failure> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .map_err(|_| Failure::temp("unable to read input"))?
            == 0
        {
            return Ok(());
        }
        each(&line)?;
    }
}

/// The fields of a passwd line qmail-pw2u uses, or None for a line it skips.
struct Account<'a> {
    user: &'a [u8],
    uid: &'a [u8],
    gid: &'a [u8],
    home: &'a [u8],
}

fn account(line: &[u8]) -> Option<Account<'_>> {
    if line.contains(&0) {
        return None;
    }
    // The home field must be followed by a colon (the shell's field).
    let f: Vec<&[u8]> = line.splitn(7, |&b| b == b':').collect();
    if f.len() < 7 {
        return None;
    }
    Some(Account {
        user: f[0],
        uid: f[2],
        gid: f[3],
        home: f[5],
    })
}

/// scan_ulong: the leading decimal digits.
fn number(s: &[u8]) -> u64 {
    s.iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, &d| n.wrapping_mul(10).wrapping_add(u64::from(d - b'0')))
}

/// Converts `passwd` into assign lines on `out`, with the lists of `users`.
pub fn convert(opts: &Options, users: &Path, passwd: impl BufRead, out: impl Write) -> Result<(), Failure> {
    let include = read_list(&users.join("include"))?.map(|l| Map::new(l, false));
    let exclude = read_list(&users.join("exclude"))?.map(|l| Map::new(l, false));
    let mailnames = read_list(&users.join("mailnames"))?.map(|l| Map::new(l, true));
    let mut out = io::BufWriter::new(out);
    let dashcolon: &[u8] = if opts.slash { b"-/:" } else { b"-:" };
    // Every account written: user and its `:user:uid:gid:home:` part, for subusers.
    let mut written: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut alias = false;
    let mut w = Writer { out: &mut out };

    for_lines(passwd, |line| {
        let Some(a) = account(line) else {
            return Ok(());
        };
        let uid = number(a.uid);
        if uid == 0
            || (!opts.upper && a.user.iter().any(u8::is_ascii_uppercase))
            || include.as_ref().is_some_and(|m| m.get(a.user).is_none())
            || exclude.as_ref().is_some_and(|m| m.get(a.user).is_some())
        {
            return Ok(());
        }
        if opts.homes != Homes::Ignore {
            let home = std::ffi::OsStr::from_bytes(a.home);
            match std::fs::metadata(home) {
                Ok(st) if st.uid() as u64 != uid => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound && opts.homes == Homes::Skip => return Ok(()),
                Err(_) => {
                    return Err(Failure::temp(format!(
                        "unable to stat {}",
                        String::from_utf8_lossy(a.home)
                    )))
                }
            }
        }
        let uugh = [b":", a.user, b":", a.uid, b":", a.gid, b":", a.home, b":"].concat();
        if a.user == b"alias" {
            w.line(&[b"+", &uugh, dashcolon, b":\n"])?;
            alias = true;
        }
        let names = mailnames.as_ref().and_then(|m| m.get(a.user)).unwrap_or(a.user);
        for name in names.split(|&b| b == b':').filter(|n| !n.is_empty()) {
            w.line(&[b"=", name, &uugh, b"::\n"])?;
            if let Some(b) = opts.brk {
                w.line(&[b"+", name, &[b], &uugh, dashcolon, b":\n"])?;
            }
        }
        written.push((a.user.to_vec(), uugh));
        Ok(())
    })?;
    if !alias {
        return Err(Failure::temp("unable to find alias user"));
    }

    if let Some(subusers) = open_lines(&users.join("subusers"))? {
        let written = Map(written);
        for_lines(subusers, |line| {
            let f: Vec<&[u8]> = line.splitn(4, |&b| b == b':').collect();
            if f.len() < 3 {
                return Ok(());
            }
            let (sub, user) = (f[0], f[1]);
            let Some(uugh) = written.get(user) else {
                return Err(Failure::temp(format!(
                    "unable to find {} user for subuser",
                    String::from_utf8_lossy(user)
                )));
            };
            if f.len() < 4 {
                return Ok(());
            }
            let pre = f[2];
            w.line(&[b"=", sub, uugh, dashcolon, pre, b":\n"])?;
            if let Some(b) = opts.brk {
                w.line(&[b"+", sub, &[b], uugh, dashcolon, pre, b"-:\n"])?;
            }
            Ok(())
        })?;
    }

    if let Some(mut append) = open_lines(&users.join("append"))? {
        let mut buf = Vec::new();
        append
            .read_to_end(&mut buf)
            .map_err(|_| Failure::temp("unable to read input"))?;
        w.line(&[&buf])?;
    }
    w.line(&[b".\n"])?;
    out.flush().map_err(|_| Failure::temp("unable to write output"))
}

struct Writer<'a, W: Write> {
    out: &'a mut W,
}

impl<W: Write> Writer<'_, W> {
    fn line(&mut self, parts: &[&[u8]]) -> Result<(), Failure> {
        for p in parts {
            self.out
                .write_all(p)
                .map_err(|_| Failure::temp("unable to write output"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn dir(name: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("rqmail-pw2u-{}-{name}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn run(opts: &Options, users: &Path, passwd: &str) -> Result<String, Failure> {
        let mut out = Vec::new();
        convert(opts, users, passwd.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    const H: Options = Options {
        homes: Homes::Ignore,
        upper: false,
        brk: Some(b'-'),
        slash: false,
    };

    #[test]
    fn accounts_become_assignments() {
        let d = dir("basic");
        let passwd = "root:x:0:0:root:/root:/bin/sh\nalias:*:7790:7781::/var/qmail/alias:/bin/false\n\
                      joe:x:1000:100:Joe:/home/joe:/bin/sh\nBig:x:1001:100::/home/big:/bin/sh\n\
                      short:x:1002:100::/home/short\nbad\0nul:x:1003:1::/h:/s\nlast:x:1004:1::/home/last:";
        assert_eq!(
            run(&H, &d.0, passwd).unwrap(),
            "+:alias:7790:7781:/var/qmail/alias:-::\n\
             =alias:alias:7790:7781:/var/qmail/alias:::\n+alias-:alias:7790:7781:/var/qmail/alias:-::\n\
             =joe:joe:1000:100:/home/joe:::\n+joe-:joe:1000:100:/home/joe:-::\n\
             =last:last:1004:1:/home/last:::\n+last-:last:1004:1:/home/last:-::\n.\n"
        );
        let opts = Options {
            upper: true,
            brk: None,
            slash: true,
            ..H
        };
        assert_eq!(
            run(&opts, &d.0, passwd).unwrap(),
            "+:alias:7790:7781:/var/qmail/alias:-/::\n=alias:alias:7790:7781:/var/qmail/alias:::\n\
             =joe:joe:1000:100:/home/joe:::\n=Big:Big:1001:100:/home/big:::\n=last:last:1004:1:/home/last:::\n.\n"
        );
        let opts = Options { brk: Some(b'+'), ..H };
        assert!(run(&opts, &d.0, passwd)
            .unwrap()
            .contains("\n+joe+:joe:1000:100:/home/joe:-::\n"));
        assert_eq!(
            run(&H, &d.0, "joe:x:1:1::/h:/s\n"),
            Err(Failure::temp("unable to find alias user"))
        );
    }

    #[test]
    fn the_users_files() {
        let d = dir("files");
        let passwd = "alias:x:7790:7781::/a:/s\njoe:x:1000:100::/home/joe:/s\nann:x:1001:100::/home/ann:/s\n";
        fs::write(d.0.join("exclude"), "# not ann\nANN  \n").unwrap();
        fs::write(d.0.join("mailnames"), "joe:old\nJoe::joe.shmoe:js\nnobody:x\n").unwrap();
        fs::write(d.0.join("subusers"), "help:JOE:helpdesk:\n#ignored\nnocolon\n").unwrap();
        fs::write(d.0.join("append"), "=x:x:1:1:/x:::\n").unwrap();
        assert_eq!(
            run(&H, &d.0, passwd).unwrap(),
            "+:alias:7790:7781:/a:-::\n=alias:alias:7790:7781:/a:::\n+alias-:alias:7790:7781:/a:-::\n\
             =joe.shmoe:joe:1000:100:/home/joe:::\n+joe.shmoe-:joe:1000:100:/home/joe:-::\n\
             =js:joe:1000:100:/home/joe:::\n+js-:joe:1000:100:/home/joe:-::\n\
             =help:joe:1000:100:/home/joe:-:helpdesk:\n+help-:joe:1000:100:/home/joe:-:helpdesk-:\n\
             =x:x:1:1:/x:::\n.\n"
        );
        fs::write(d.0.join("include"), "alias\n").unwrap();
        assert_eq!(
            run(&H, &d.0, passwd),
            Err(Failure::temp("unable to find JOE user for subuser"))
        );
    }

    #[test]
    fn homes_missing_or_not_owned() {
        let d = dir("homes");
        let own = d.0.join("own");
        fs::create_dir(&own).unwrap();
        // uid 0 is never an account here: as root, give the home to a test uid.
        let mut me = nix::unistd::getuid().as_raw();
        if me == 0 {
            me = 7799;
            std::os::unix::fs::chown(&own, Some(me), None).unwrap();
        }
        let passwd = format!(
            "alias:x:{me}:1::{own}:/s\nother:x:{}:1::{own}:/s\ngone:x:{me}:1::{}/gone:/s\n",
            me + 1,
            d.0.display(),
            own = own.display()
        );
        let out = run(
            &Options {
                homes: Homes::Skip,
                ..H
            },
            &d.0,
            &passwd,
        )
        .unwrap();
        assert!(
            out.contains("=alias:") && !out.contains("other") && !out.contains("gone"),
            "{out}"
        );
        let stop = run(
            &Options {
                homes: Homes::Stop,
                ..H
            },
            &d.0,
            &passwd,
        )
        .unwrap_err();
        assert_eq!(stop.text, format!("unable to stat {}/gone", d.0.display()));
        let all = run(&H, &d.0, &passwd).unwrap();
        assert!(all.contains("=other:") && all.contains("=gone:"));
    }
}
