fn main() {
    let code = match queue::qmail_queue::setup() {
        Ok(ids) => queue::qmail_queue::run(&ids),
        Err(code) => code,
    };
    std::process::exit(code)
}
