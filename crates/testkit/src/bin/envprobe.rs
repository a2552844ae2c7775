//! Reports what a program started by tcpserver (or checkpassword, ...) sees, on
//! stdout: `ENV name=value` lines (sorted), the Uid/Gid/Groups lines of
//! /proc/self/status, `LIMIT_AS` (the soft address-space limit), `CWD dir` and `FDS n n ...`; then `END`. With an argument N it
//! first sleeps N seconds; `-` as argument prints nothing but `ok` (the trivial child
//! for benchmarks).

use std::io::Write;

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_default();
    let mut out = Vec::new();
    if arg == "-" {
        let _ = std::io::stdout().write_all(b"ok\n");
        return;
    }
    if let Ok(secs) = arg.parse::<f64>() {
        std::thread::sleep(std::time::Duration::from_secs_f64(secs));
    }
    let mut vars: Vec<String> = std::env::vars_os()
        .map(|(n, v)| format!("ENV {}={}", n.to_string_lossy(), v.to_string_lossy()))
        .collect();
    vars.sort();
    for v in vars {
        writeln!(out, "{v}").unwrap();
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    for line in status
        .lines()
        .filter(|l| l.starts_with("Uid:") || l.starts_with("Gid:") || l.starts_with("Groups:"))
    {
        writeln!(out, "{}", line.split_whitespace().collect::<Vec<_>>().join(" ")).unwrap();
    }
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    if let Some(l) = limits.lines().find(|l| l.starts_with("Max address space")) {
        writeln!(out, "LIMIT_AS {}", l.split_whitespace().nth(3).unwrap_or("")).unwrap();
    }
    writeln!(
        out,
        "CWD {}",
        std::env::current_dir()
            .map(|d| d.display().to_string())
            .unwrap_or_default()
    )
    .unwrap();
    let mut fds: Vec<u32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default();
    fds.sort();
    writeln!(
        out,
        "FDS {}",
        fds.iter().map(u32::to_string).collect::<Vec<_>>().join(" ")
    )
    .unwrap();
    writeln!(out, "END").unwrap();
    let _ = std::io::stdout().write_all(&out);
}
