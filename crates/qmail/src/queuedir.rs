//! The queue's file names, laid out as qmail 1.03's INTERNALS describes: what
//! qmail-queue writes and qmail-send, qmail-clean, qmail-qread and qmail-qstat read.
//!
//! Message N lives in `mess/(N mod SPLIT)/N`; `intd/` and `todo/` are flat (no
//! big-todo), as in notqmail, so a queue written by either is the same layout.

/// qmail's conf-split: the number of subdirectories of each split directory.
pub const SPLIT: u64 = 23;

/// Directories split into `0..SPLIT` subdirectories.
pub const SPLIT_DIRS: [&str; 4] = ["mess", "info", "local", "remote"];

/// `dir/(n mod SPLIT)/n`, relative to the queue directory.
pub fn split_name(dir: &str, n: u64) -> String {
    format!("{dir}/{}/{n}", n % SPLIT)
}

/// `dir/n`, for the flat directories (intd, todo, bounce).
pub fn flat_name(dir: &str, n: u64) -> String {
    format!("{dir}/{n}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn names() {
        assert_eq!(super::split_name("mess", 4711), "mess/19/4711");
        assert_eq!(super::flat_name("todo", 4711), "todo/4711");
    }
}
