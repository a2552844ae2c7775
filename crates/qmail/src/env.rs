//! An explicit environment for the program a process execs, and the PATH search that
//! runs it. Building the child's environment as a value (rather than calling setenv on
//! our own) keeps it testable and keeps "what the child sees" in one place.

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// Name/value pairs in the order they will be passed to the child.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Env {
    vars: Vec<(OsString, OsString)>,
}

impl Env {
    /// This process's environment.
    pub fn inherited() -> Env {
        Env {
            vars: std::env::vars_os().collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_os_str())
    }

    /// Sets `name`, replacing an earlier value in place.
    pub fn set(&mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        let (name, value) = (name.as_ref(), value.as_ref().to_os_string());
        match self.vars.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.vars.push((name.to_os_string(), value)),
        }
    }

    /// Sets `name` if `value` is Some, removes it otherwise: ucspi-tcp removes a
    /// variable whose value is unknown rather than leaving an inherited one.
    pub fn set_or_unset(&mut self, name: &str, value: Option<impl AsRef<OsStr>>) {
        match value {
            Some(v) => self.set(name, v),
            None => self.unset(name),
        }
    }

    pub fn unset(&mut self, name: &str) {
        self.vars.retain(|(n, _)| n != name);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.vars.iter().map(|(n, v)| (n.as_os_str(), v.as_os_str()))
    }

    fn envp(&self) -> Vec<CString> {
        self.vars
            .iter()
            .filter_map(|(n, v)| {
                let mut kv = n.clone().into_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                CString::new(kv).ok()
            })
            .collect()
    }

    /// Runs `argv[0]` with this environment, searching this environment's PATH when
    /// the name has no slash (djb's `pathexec`). Returns only on failure, with the
    /// most telling error: one other than "file does not exist" if any try had one.
    pub fn exec(&self, argv: &[OsString]) -> io::Error {
        let Some(prog) = argv.first() else {
            return io::Error::from_raw_os_error(libc::ENOENT);
        };
        let args: Vec<CString> = match argv.iter().map(|a| CString::new(a.as_bytes())).collect() {
            Ok(a) => a,
            Err(_) => return io::Error::from_raw_os_error(libc::EINVAL),
        };
        let envp = self.envp();
        if prog.as_bytes().contains(&b'/') {
            return execve(&args[0], &args, &envp);
        }
        let path = self.get("PATH").map(OsStr::as_bytes).unwrap_or(b"/bin:/usr/bin");
        let mut err = io::Error::from_raw_os_error(libc::ENOENT);
        for dir in path.split(|&b| b == b':') {
            let dir: &[u8] = if dir.is_empty() { b"." } else { dir };
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(prog.as_bytes());
            let Ok(full) = CString::new(full) else {
                continue;
            };
            let e = execve(&full, &args, &envp);
            if e.raw_os_error() != Some(libc::ENOENT) {
                err = e;
            }
        }
        err
    }
}

fn execve(path: &CString, args: &[CString], envp: &[CString]) -> io::Error {
    match nix::unistd::execve(path, args, envp) {
        Err(e) => io::Error::from_raw_os_error(e as i32),
        Ok(never) => match never {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replaces_in_place_and_unset_removes() {
        let mut e = Env::default();
        e.set("A", "1");
        e.set("B", "2");
        e.set("A", "3");
        assert_eq!(
            e.iter().map(|(n, _)| n.to_str().unwrap()).collect::<Vec<_>>(),
            ["A", "B"]
        );
        assert_eq!(e.get("A").unwrap(), "3");
        e.set_or_unset("A", None::<&str>);
        assert!(e.get("A").is_none());
        assert_eq!(e.envp(), vec![CString::new("B=2").unwrap()]);
    }

    #[test]
    fn exec_reports_missing_program() {
        let mut e = Env::default();
        e.set("PATH", "/nonexistent:/also/not");
        let err = e.exec(&["no-such-program-rqmail".into()]);
        assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    }
}
