//! `except program [arg ...]`: see local::tools::except.
fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if args.is_empty() {
        qmail::exit::usage("except", "except program [ arg ... ]");
    }
    match local::tools::except::run(&args) {
        Ok(code) => std::process::exit(code),
        Err(f) => f.die("except"),
    }
}
