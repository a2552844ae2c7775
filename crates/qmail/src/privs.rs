//! Dropping root for good: setgroups, setgid, setuid, in that order, then a check
//! that the process cannot get root back.

use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
use std::io;

/// Becomes `uid`/`gid` with `gid` as the only supplementary group. A `None` leaves
/// that id alone (ucspi-tcp's `-g` without `-u`, or the reverse).
/// Without root there is nothing to drop and nothing can be changed: a process
/// already running as those ids (a `make run` instance whose qmail users are all its
/// one user) goes on; any other request is EPERM, as setuid would say.
pub fn drop_to(uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    use nix::unistd::{getegid, geteuid, getgid, getuid};
    let err = |e: nix::Error| io::Error::from_raw_os_error(e as i32);
    if !geteuid().is_root() {
        let same_gid = gid.is_none_or(|g| getgid().as_raw() == g && getegid().as_raw() == g);
        let same_uid = uid.is_none_or(|u| getuid().as_raw() == u && geteuid().as_raw() == u);
        return if same_gid && same_uid {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::EPERM))
        };
    }
    if let Some(g) = gid {
        setgroups(&[Gid::from_raw(g)]).map_err(err)?;
        setgid(Gid::from_raw(g)).map_err(err)?;
    }
    if let Some(u) = uid {
        setuid(Uid::from_raw(u)).map_err(err)?;
        if u != 0 && setuid(Uid::from_raw(0)).is_ok() {
            return Err(io::Error::from_raw_os_error(libc::EPERM));
        }
    }
    Ok(())
}
