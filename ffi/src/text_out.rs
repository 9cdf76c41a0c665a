//! Text handed to a caller's buffer the way `snprintf` does it: as much as
//! fits, always NUL-terminated, and the full length returned so that the
//! caller can size a buffer and ask again.

use std::ffi::c_char;

/// Copies `text` into `buf` (NUL-terminated, truncated to `len - 1` bytes;
/// nothing is written when `buf` is NULL or `len` is 0) and returns the
/// full length of `text` without the NUL. A NUL inside `text` is written
/// as `?`: the C string would end there, short of the length returned.
///
/// # Safety
/// `buf`, when not NULL, must point to `len` writable bytes that do not
/// overlap `text`.
pub(crate) unsafe fn copy_text(text: &[u8], buf: *mut c_char, len: usize) -> usize {
    if !buf.is_null() && len > 0 {
        let n = text.len().min(len - 1);
        // SAFETY: the caller guarantees `buf` holds `len` bytes and does
        // not overlap `text`; `n + 1 <= len` of them are written.
        unsafe {
            let out = std::slice::from_raw_parts_mut(buf.cast::<u8>(), n + 1);
            for (o, &b) in out.iter_mut().zip(&text[..n]) {
                *o = if b == 0 { b'?' } else { b };
            }
            out[n] = 0;
        }
    }
    text.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copied(text: &[u8], len: usize) -> (usize, Vec<u8>) {
        let mut buf = vec![0x7f_u8; len];
        // SAFETY: `buf` has `len` bytes.
        let n = unsafe { copy_text(text, buf.as_mut_ptr().cast(), len) };
        (n, buf)
    }

    #[test]
    fn it_truncates_like_snprintf() {
        assert_eq!(copied(b"hello", 4), (5, b"hel\0".to_vec()));
        assert_eq!(copied(b"hello", 6), (5, b"hello\0".to_vec()));
        assert_eq!(copied(b"hello", 9).1[..6], *b"hello\0");
        assert_eq!(copied(b"", 1), (0, b"\0".to_vec()));
        // SAFETY: NULL is allowed whatever `len` says.
        assert_eq!(unsafe { copy_text(b"hello", std::ptr::null_mut(), 3) }, 5);
    }

    #[test]
    fn a_nul_inside_becomes_a_question_mark() {
        assert_eq!(copied(b"a\0b", 4), (3, b"a?b\0".to_vec()));
    }

    #[test]
    fn a_zero_length_writes_nothing() {
        assert_eq!(copied(b"hello", 0), (5, vec![]));
    }
}
