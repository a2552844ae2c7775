use std::io::BufReader;
use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 2 {
        qmail::exit::usage("tcprules", "tcprules rules.cdb rules.tmp");
    }
    let stdin = BufReader::with_capacity(1 << 16, std::io::stdin().lock());
    if let Err(f) = ucspi_tcp::tcprules::compile(stdin, Path::new(&args[0]), Path::new(&args[1])) {
        f.die("tcprules");
    }
}
