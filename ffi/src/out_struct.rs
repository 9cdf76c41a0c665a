//! Out-structs that grow by appending fields (`chronica_distributed_stats`),
//! written safely for callers built against any version of the header.
//! (`chronica_node_stats` is not one: SPEC section 5 fixes its layout.)
//!
//! Such a struct starts with `size_t struct_size`, which the caller sets to
//! `sizeof` its struct. The library reads it before doing anything, refuses
//! a size below the first version's (0 included: a caller that left it
//! unset), and then writes only the fields that lie wholly within it: a
//! caller built against an older header, whose struct ends earlier, gets
//! the fields it knows and nothing past its end. `struct_size` itself is
//! never written, so one struct can be passed again and again. Fields are
//! copied one by one rather than as a byte prefix, so no padding byte (in
//! Rust, uninitialised) is ever copied out and no field is half-written.

use crate::status::{Failure, FfiResult};

/// An out-struct whose first member is `struct_size: usize`.
pub(crate) trait OutStruct: Sized {
    /// The C name, for messages.
    const NAME: &'static str;
    /// The smallest `struct_size` accepted: where the first version's last
    /// field ends.
    const FIRST_VERSION_SIZE: usize;
    /// `(offset, length)` of every field after `struct_size`, in order.
    const FIELDS: &'static [(usize, usize)];
}

/// The `(offset, length)` of field `$f` of type `$t` in struct `$s`.
macro_rules! field {
    ($s:ty, $f:ident: $t:ty) => {
        (std::mem::offset_of!($s, $f), std::mem::size_of::<$t>())
    };
}
pub(crate) use field;

/// Checks the out-pointer `out` (not NULL) and the `struct_size` its
/// caller set, and returns that size. Call it with the other argument
/// checks, before the call has any effect.
///
/// # Safety
/// `out` must be NULL or point to at least a readable `size_t`.
pub(crate) unsafe fn checked_size<T: OutStruct>(out: *mut T, what: &str) -> FfiResult<usize> {
    if out.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: non-NULL, and every version of the struct starts with it.
    let size = unsafe { out.cast::<usize>().read() };
    if size < T::FIRST_VERSION_SIZE {
        return Err(Failure::invalid(format!(
            "{what}->struct_size is {size}, below the {} bytes of the first version of {}: set it to sizeof(struct {})",
            T::FIRST_VERSION_SIZE,
            T::NAME,
            T::NAME
        )));
    }
    Ok(size)
}

/// Writes the fields of `value` that lie wholly within the first `size`
/// bytes of `*out` (a size from [`checked_size`]); nothing else.
///
/// # Safety
/// `out` must be valid for writes of `size` bytes.
pub(crate) unsafe fn write_fields<T: OutStruct>(out: *mut T, value: &T, size: usize) {
    let from = (value as *const T).cast::<u8>();
    let to = out.cast::<u8>();
    for &(offset, len) in T::FIELDS {
        if offset + len > size {
            break; // fields are in order: none further fits either
        }
        // SAFETY: the field lies within `value` (FIELDS comes from
        // offset_of! and the field's type) and within the caller's first
        // `size` bytes (checked above); the two never overlap, as `value`
        // is ours.
        unsafe { std::ptr::copy_nonoverlapping(from.add(offset), to.add(offset), len) };
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Every struct's FIELDS: in order, inside the struct, after
    /// `struct_size`, and covering every field: a value written at full
    /// size comes back equal (a field missing from FIELDS would stay 0).
    pub(crate) fn check<T: OutStruct + Copy + Default + PartialEq + std::fmt::Debug>(full: T) {
        let mut end = std::mem::size_of::<usize>();
        for &(offset, len) in T::FIELDS {
            assert!(offset >= end, "{}: FIELDS out of order at {offset}", T::NAME);
            end = offset + len;
        }
        assert!(end <= std::mem::size_of::<T>(), "{}: FIELDS past the struct", T::NAME);
        assert!(T::FIRST_VERSION_SIZE <= end, "{}: first version past the last field", T::NAME);
        let mut got = T::default();
        let size = std::mem::size_of::<T>();
        // SAFETY: `got` is a whole T.
        unsafe {
            (&mut got as *mut T).cast::<usize>().write(size);
            assert_eq!(checked_size(&mut got, "out").unwrap(), size);
            write_fields(&mut got, &full, size);
            (&mut got as *mut T).cast::<usize>().write((&full as *const T).cast::<usize>().read());
        }
        assert_eq!(got, full, "{}: a field is missing from FIELDS", T::NAME);
    }
}
