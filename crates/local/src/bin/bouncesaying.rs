//! `bouncesaying error [program [arg ...]]`: see local::tools::bouncesaying.
const PROG: &str = "bouncesaying";

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        qmail::exit::usage(PROG, "bouncesaying error [ program [ arg ... ] ]");
    }
    match local::tools::bouncesaying::run(&args[1..]) {
        Ok(true) => {
            use std::io::Write;
            use std::os::unix::ffi::OsStrExt;
            let mut line = args[0].as_bytes().to_vec();
            line.push(b'\n');
            let _ = std::io::stderr().write_all(&line);
            std::process::exit(qmail::exit::PERMANENT);
        }
        Ok(false) => {}
        Err(f) => f.die(PROG),
    }
}
