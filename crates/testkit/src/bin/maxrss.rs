//! maxrss PROG [ARG...]: runs PROG with every descriptor inherited and prints
//! `maxrss KB EXIT` on stderr: the peak resident set of PROG alone. (A child forked from
//! the benchmark's python would count python's pages too.)
use std::os::unix::process::ExitStatusExt;

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let Some((prog, rest)) = args.split_first() else {
        eprintln!("usage: maxrss prog [arg ...]");
        std::process::exit(100);
    };
    let status = match std::process::Command::new(prog).args(rest).status() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("maxrss: unable to run {}: {e}", prog.to_string_lossy());
            std::process::exit(111);
        }
    };
    // SAFETY: rusage is plain data that getrusage fills.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let code = status.code().unwrap_or(128 + status.signal().unwrap_or(0));
    eprintln!("maxrss {} {code}", usage.ru_maxrss);
    std::process::exit(code);
}
