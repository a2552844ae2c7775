//! ucspi-tlsd: see tls::server.
fn main() {
    tls::server::run(std::env::args_os().skip(1).collect())
}
