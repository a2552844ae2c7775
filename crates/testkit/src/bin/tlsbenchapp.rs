//! tlsbenchapp MODE: the application behind a TLS server in `make bench`, static so
//! that its start costs the same behind every server. `hello` writes one line and
//! exits; `sink N` reads N bytes (or to EOF) and writes the byte count.
use std::io::{Read, Write};

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    let mut out = std::io::stdout();
    if mode == "sink" {
        let want: u64 = std::env::args().nth(2).and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
        let mut buf = vec![0u8; 65536];
        let mut total = 0u64;
        let mut input = std::io::stdin();
        while total < want {
            let Ok(n) = input.read(&mut buf) else { break };
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        let _ = writeln!(out, "{total}");
    } else {
        let _ = out.write_all(b"220 hello\r\n");
    }
}
