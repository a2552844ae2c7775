//! queuebench: messages/s through a queueing program, or fsyncs/s of a disk.
//!
//!   queuebench CONC COUNT SIZE qq  PROG...   message on fd 0, envelope on fd 1 (qmail-queue)
//!   queuebench CONC COUNT SIZE stdin PROG... message on fd 0 (sendmail)
//!   queuebench CONC COUNT SIZE fsync DIR     create, write SIZE bytes, fsync, unlink
//!
//! CONC threads share COUNT operations. Prints `rate N failures F`.
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let (conc, count, size): (usize, usize, usize) =
        (a[0].parse().unwrap(), a[1].parse().unwrap(), a[2].parse().unwrap());
    let mode = a[3].clone();
    let prog: Arc<Vec<String>> = Arc::new(a[4..].to_vec());
    let mut message = b"Subject: bench\n\n".to_vec();
    while message.len() < size {
        message.extend_from_slice(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-_=\n");
    }
    message.truncate(size);
    let message = Arc::new(message);
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..conc)
        .map(|w| {
            let (prog, message, next, failures, mode) = (
                prog.clone(),
                message.clone(),
                next.clone(),
                failures.clone(),
                mode.clone(),
            );
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let ok = match mode.as_str() {
                        "fsync" => fsync_once(&prog[0], w, &message),
                        _ => queue_once(&prog, &message, mode == "qq"),
                    };
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "rate {:.1} failures {}",
        count as f64 / secs,
        failures.load(Ordering::Relaxed)
    );
}

fn queue_once(prog: &[String], message: &[u8], qq: bool) -> bool {
    let mut cmd = Command::new(&prog[0]);
    cmd.args(&prog[1..]).stdin(Stdio::piped()).stderr(Stdio::null());
    let mut envw = None;
    if qq {
        let mut fds = [0; 2];
        // SAFETY: a plain pipe2 into a local array.
        unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
        let r = fds[0];
        // SAFETY: the child gets the read end as fd 1; dup2 is async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                libc::dup2(r, 1);
                Ok(())
            });
        }
        envw = Some((fds[0], fds[1]));
    } else {
        cmd.stdout(Stdio::null());
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(_) => return false,
    };
    let mut stdin = child.stdin.take().unwrap();
    let _ = stdin.write_all(message);
    drop(stdin);
    if let Some((r, w)) = envw {
        // SAFETY: our own pipe fds, closed once.
        unsafe {
            libc::close(r);
            let env = b"Fbench@example.org\0Trcpt@example.net\0\0";
            libc::write(w, env.as_ptr().cast(), env.len());
            libc::close(w);
        }
    }
    child.wait().map(|s| s.success()).unwrap_or(false)
}

fn fsync_once(dir: &str, worker: usize, data: &[u8]) -> bool {
    let path = format!("{dir}/fsync.{worker}");
    let ok = std::fs::File::create(&path).and_then(|mut f| {
        f.write_all(data)?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&path);
    ok.is_ok()
}
