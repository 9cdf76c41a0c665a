//! The library's version, as a string and as a number.

use std::ffi::c_char;

use crate::boundary::boundary;

/// The version this header describes, as 0xMMmmpp (major, minor, patch).
/// Compare with `chronica_version_number()` to detect a header / library
/// mismatch at run time.
pub const CHRONICA_VERSION_NUMBER: u32 = 0x000100;

/// The library version, NUL-terminated, e.g. "0.1.0". Static; never NULL;
/// must not be freed.
#[no_mangle]
pub extern "C" fn chronica_version() -> *const c_char {
    boundary(|| concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast::<c_char>())
}

/// The library version as 0xMMmmpp, the value `CHRONICA_VERSION_NUMBER` had
/// when the library was built.
#[no_mangle]
pub extern "C" fn chronica_version_number() -> u32 {
    boundary(version_number)
}

fn version_number() -> u32 {
    let part = |s: &str| s.parse::<u32>().unwrap_or(0);
    (part(env!("CARGO_PKG_VERSION_MAJOR")) << 16)
        | (part(env!("CARGO_PKG_VERSION_MINOR")) << 8)
        | part(env!("CARGO_PKG_VERSION_PATCH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_constant_agrees_with_cargo_toml() {
        assert_eq!(CHRONICA_VERSION_NUMBER, version_number(), "update CHRONICA_VERSION_NUMBER");
    }
}
