//! The record a checkpassword program reads on descriptor 3: each field followed by
//! NUL (`login\0password\0challenge\0`). NUL is the separator, so a field that holds
//! one is refused here, by the one encoder every caller uses: no client byte can end
//! a field and start one of its own (a CRAM-MD5 challenge, say).

use crate::secret::Secret;

/// The record, or `None` when a field holds NUL.
pub fn record(fields: &[&[u8]]) -> Option<Secret> {
    if fields.iter().any(|f| f.contains(&0)) {
        return None;
    }
    let mut data = Secret(Vec::with_capacity(fields.iter().map(|f| f.len() + 1).sum()));
    for f in fields {
        data.0.extend_from_slice(f);
        data.0.push(0);
    }
    Some(data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn nul_is_only_ever_a_separator() {
        assert_eq!(&*super::record(&[b"u", b"p", b""]).unwrap(), b"u\0p\0\0");
        assert!(super::record(&[b"u", b"5f\0<1.2@h>", b""]).is_none());
    }
}
