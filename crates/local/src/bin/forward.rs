//! `forward address ...`: see local::tools::forward.
fn main() {
    let addresses: Vec<_> = std::env::args_os().skip(1).collect();
    match local::tools::forward::run(&qmail::home::home(), &addresses, std::io::stdin().lock()) {
        Ok(qp) => eprintln!("forward: qp {qp}"),
        Err(f) => f.die("forward"),
    }
}
