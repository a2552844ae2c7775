fn main() {
    std::process::exit(ucspi_tcp::tcpserver::main(std::env::args_os().skip(1).collect()));
}
