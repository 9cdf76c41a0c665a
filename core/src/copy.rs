//! Copies of caller-owned bytes that fail instead of aborting.

use bytes::Bytes;

use crate::{Error, Result};

/// `data` copied into a buffer of its own, or [`Error::Resource`] when the
/// memory cannot be had. The C and Python layers copy the payloads and
/// keys their callers hand them, and `Bytes::copy_from_slice` aborts the
/// whole host process when its allocation fails (a 1.8 GiB payload under
/// an address-space limit did).
#[doc(hidden)]
pub fn copy_bytes(data: &[u8]) -> Result<Bytes> {
    let mut copy = Vec::new();
    copy.try_reserve_exact(data.len())
        .map_err(|_| Error::Resource(format!("no memory for a copy of {} bytes", data.len())))?;
    copy.extend_from_slice(data);
    Ok(Bytes::from(copy))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_equal() {
        assert_eq!(copy_bytes(b"abc").unwrap(), Bytes::from_static(b"abc"));
        assert!(copy_bytes(b"").unwrap().is_empty());
    }
}
