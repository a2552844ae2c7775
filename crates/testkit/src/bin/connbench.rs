//! `connbench HOST PORT CONCURRENCY COUNT`: makes COUNT connections, CONCURRENCY at a
//! time, each read to EOF; prints `connections/s N` and the failures. A test tool, so
//! it may use threads; the programs it measures may not.

use std::io::Read;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() != 4 {
        eprintln!("usage: connbench host port concurrency count");
        std::process::exit(100);
    }
    let addr = format!("{}:{}", a[0], a[1]);
    let (conc, count): (u64, u64) = (a[2].parse().unwrap(), a[3].parse().unwrap());
    let next = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..conc)
        .map(|_| {
            let (addr, next, failed) = (addr.clone(), next.clone(), failed.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    let ok = TcpStream::connect(&addr).and_then(|mut s| {
                        s.set_read_timeout(Some(Duration::from_secs(10)))?;
                        let mut got = 0;
                        loop {
                            match s.read(&mut buf)? {
                                0 => return Ok(got),
                                n => got += n,
                            }
                        }
                    });
                    if !matches!(ok, Ok(n) if n > 0) {
                        failed.fetch_add(1, Ordering::Relaxed);
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
        "connections/s {:.0} failed {}",
        count as f64 / secs,
        failed.load(Ordering::Relaxed)
    );
}
