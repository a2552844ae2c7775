//! checkpassword-users: see checkpassword::users.
fn main() {
    let args = std::env::args_os().skip(1).collect();
    let stdin = std::io::stdin().lock();
    if let Err(f) = checkpassword::users::run(args, stdin, std::io::stdout()) {
        f.die("checkpassword-users");
    }
}
