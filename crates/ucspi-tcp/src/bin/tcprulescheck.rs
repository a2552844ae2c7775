use qmail::rules::Client;
use std::io::Write;

fn main() {
    let Some(cdb) = std::env::args_os().nth(1) else {
        qmail::exit::usage("tcprulescheck", "tcprulescheck rules.cdb");
    };
    let var = |n| std::env::var(n).ok();
    let (ip, host, info) = (var("TCPREMOTEIP"), var("TCPREMOTEHOST"), var("TCPREMOTEINFO"));
    let client = Client {
        ip: ip.as_deref().unwrap_or("0.0.0.0"),
        host: host.as_deref(),
        info: info.as_deref(),
    };
    match ucspi_tcp::tcprulescheck::report(cdb.as_ref(), &client) {
        Ok(text) => {
            let _ = std::io::stdout().write_all(text.as_bytes());
        }
        Err(e) => {
            qmail::exit::Failure::io(format_args!("unable to read {}", cdb.to_string_lossy()), &e).die("tcprulescheck")
        }
    }
}
