//! qmail-qstat: how many messages are in the queue, and how many of them qmail-send
//! has not yet preprocessed. Reads `mess/` and `todo/` through group qmail.

use qmail::exit::Failure;
use qmail::queuedir::SPLIT;
use std::io;
use std::path::Path;

fn count(dir: &Path) -> io::Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        if e?.file_type()?.is_file() {
            n += 1;
        }
    }
    Ok(n)
}

/// (messages, not yet preprocessed) in the queue directory `q`.
pub fn stat(q: &Path) -> io::Result<(usize, usize)> {
    let mut mess = 0;
    for s in 0..SPLIT {
        mess += count(&q.join(format!("mess/{s}")))?;
    }
    Ok((mess, count(&q.join("todo"))?))
}

/// qmail-qstat's two lines for the queue directory `q`.
pub fn report(q: &Path) -> Result<String, Failure> {
    let (mess, todo) = stat(q).map_err(|e| Failure::io(format_args!("unable to read {}", q.display()), &e))?;
    Ok(format!(
        "messages in queue: {mess}\nmessages in queue but not yet preprocessed: {todo}\n"
    ))
}
