//! `maildirmake dir`: see local::tools::maildirmake.
fn main() {
    // SAFETY: umask only sets the process's file mode mask.
    unsafe { libc::umask(0o077) };
    let Some(dir) = std::env::args_os().nth(1) else {
        qmail::exit::usage("maildirmake", "maildirmake name");
    };
    if let Err(f) = local::tools::maildirmake::run(std::path::Path::new(&dir)) {
        f.die("maildirmake");
    }
}
