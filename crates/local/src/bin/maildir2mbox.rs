//! `maildir2mbox` (MAILDIR, MAIL, MAILTMP): see local::tools::maildir2mbox.
use local::tools::maildir2mbox::{run, Paths};

fn main() {
    // SAFETY: umask only sets the process's file mode mask.
    unsafe { libc::umask(0o077) };
    if let Err(f) = Paths::from_env().and_then(|p| run(&p)) {
        f.die("maildir2mbox");
    }
}
