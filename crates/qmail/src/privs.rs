//! Dropping root for good: setgroups, setgid, setuid, in that order, then a check
//! that the process cannot get root back.

use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};
use std::io;

/// Becomes `uid`/`gid` with `gid` as the only supplementary group. A `None` leaves
/// that id alone (ucspi-tcp's `-g` without `-u`, or the reverse).
pub fn drop_to(uid: Option<u32>, gid: Option<u32>) -> io::Result<()> {
    let err = |e: nix::Error| io::Error::from_raw_os_error(e as i32);
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
