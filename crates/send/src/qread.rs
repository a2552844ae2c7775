//! qmail-qread: one paragraph per queued message, in qmail-qread's format:
//!
//! `23 Nov 2026 20:37:03 GMT  #10052147  87  <a@b> `, then one line per recipient,
//! TAB `remote` TAB `c@d`, with `  done` in front of those already delivered.
//!
//! Messages qmail-send has preprocessed come from `info/`, `local/` and `remote/`
//! (so it runs as qmails, installed setuid qmails and executable by group qmail only,
//! like Sendmail's restrictmailq). Unlike qmail-qread it also lists messages still
//! in `todo/`, with their recipients marked `todo`, so a stopped qmail-send does not
//! hide them. Bytes outside printable ASCII are shown as `_`.

use qmail::date822::Utc;
use qmail::queuedir::{flat_name, split_name, SPLIT};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

fn printable(b: &[u8]) -> String {
    b.iter()
        .map(|&c| if (32..=126).contains(&c) { c as char } else { '_' })
        .collect()
}

fn stats(id: u64, mtime: i64, size: u64, sender: &[u8], bouncing: bool) -> String {
    let date = Utc::from_unix(mtime).rfc822();
    let date = date.trim_end_matches(" -0000");
    let b = if bouncing { " bouncing" } else { "" };
    format!(
        "{}\n",
        printable(format!("{date} GMT  #{id}  {size}  <").as_bytes()) + &printable(sender) + "> " + b
    )
}

fn records(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|&b| b == 0).filter(|r| !r.is_empty())
}

/// The listing of the queue directory `q`; `warn` gets the messages it had trouble with.
pub fn read(q: &Path, warn: &mut dyn FnMut(u64)) -> io::Result<String> {
    let mut out = String::new();
    for s in 0..SPLIT {
        let mut ids: Vec<u64> = ids(&q.join(format!("info/{s}")))?;
        ids.sort_unstable();
        for id in ids {
            if one_preprocessed(q, id, &mut out).is_err() {
                warn(id);
            }
        }
    }
    let mut todo = ids(&q.join("todo"))?;
    todo.sort_unstable();
    for id in todo {
        if one_todo(q, id, &mut out).is_err() {
            warn(id);
        }
    }
    Ok(out)
}

fn ids(dir: &Path) -> io::Result<Vec<u64>> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir)? {
        if let Some(n) = e?.file_name().to_str().and_then(|n| n.parse().ok()) {
            v.push(n);
        }
    }
    Ok(v)
}

fn one_preprocessed(q: &Path, id: u64, out: &mut String) -> io::Result<()> {
    let size = std::fs::metadata(q.join(split_name("mess", id)))?.len();
    let bouncing = q.join(flat_name("bounce", id)).exists();
    let info = q.join(split_name("info", id));
    let data = std::fs::read(&info)?;
    let mtime = std::fs::metadata(&info)?.mtime();
    let sender = records(&data).next().unwrap_or(b"F");
    out.push_str(&stats(id, mtime, size, &sender[1..], bouncing));
    for (channel, dir) in [("local", "local"), ("remote", "remote")] {
        let data = match std::fs::read(q.join(split_name(dir, id))) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for r in records(&data) {
            let done = match r[0] {
                b'D' => "  done",
                b'T' => "",
                _ => continue,
            };
            out.push_str(&format!("{done}\t{channel}\t{}\n", printable(&r[1..])));
        }
    }
    Ok(())
}

fn one_todo(q: &Path, id: u64, out: &mut String) -> io::Result<()> {
    let size = std::fs::metadata(q.join(split_name("mess", id)))?.len();
    let todo = q.join(flat_name("todo", id));
    let data = std::fs::read(&todo)?;
    let mtime = std::fs::metadata(&todo)?.mtime();
    let sender = records(&data).find(|r| r[0] == b'F').unwrap_or(b"F");
    out.push_str(&stats(id, mtime, size, &sender[1..], false));
    for r in records(&data).filter(|r| r[0] == b'T') {
        out.push_str(&format!("\ttodo\t{}\n", printable(&r[1..])));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn stats_line() {
        assert_eq!(
            super::stats(4711, 1_706_951_107, 87, b"a@b\x01", true),
            "3 Feb 2024 09:05:07 GMT  #4711  87  <a@b_>  bouncing\n"
        );
    }
}
