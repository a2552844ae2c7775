//! Passwords in memory: overwritten before their buffer is freed, so that neither a
//! later allocation nor a core file shows them.

/// Overwrites `buf` with zeros; the volatile stores cannot be optimised away.
pub fn wipe(buf: &mut [u8]) {
    for b in buf.iter_mut() {
        // SAFETY: `b` is a valid, exclusive reference.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
}

/// Bytes that held or hold a password (a base64 AUTH line, its decoding, a fd 3
/// record): wiped when dropped, on every path out.
#[derive(Default)]
pub struct Secret(pub Vec<u8>);

impl Drop for Secret {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

impl std::ops::Deref for Secret {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn zeroes() {
        let mut v = b"secret".to_vec();
        super::wipe(&mut v);
        assert_eq!(v, [0; 6]);
    }
}
