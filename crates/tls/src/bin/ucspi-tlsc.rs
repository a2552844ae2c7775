//! ucspi-tlsc: see tls::client.
fn main() {
    tls::client::run(std::env::args_os().skip(1).collect())
}
