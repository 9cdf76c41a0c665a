//! The one function every exported body runs through.
//!
//! [`boundary`] catches any panic so that it never unwinds into C (which is
//! undefined behaviour), records the failure as the thread's last error, and
//! turns the body's result into the C return value: a `chronica_status` for
//! bodies returning [`FfiResult`], NULL for pointers, 0 for sizes and
//! numbers, nothing for `void`. A test below checks that every
//! `extern "C" fn` of the crate starts its body with `boundary(`.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::status::{chronica_status, set_last_error, FfiResult};

/// A Rust value an export can hand back to C, and the value that stands for
/// a caught panic.
pub(crate) trait FfiReturn {
    /// The C-side type.
    type C;
    /// Converts a normal result (recording the last error on failure).
    fn into_c(self) -> Self::C;
    /// What C receives when the body panicked.
    fn panicked() -> Self::C;
}

impl FfiReturn for FfiResult {
    type C = chronica_status;
    fn into_c(self) -> chronica_status {
        match self {
            Ok(()) => chronica_status::CHRONICA_OK,
            Err(f) => {
                set_last_error(f.status, &f.message);
                f.status
            }
        }
    }
    fn panicked() -> chronica_status {
        chronica_status::CHRONICA_ERR_PANIC
    }
}

impl<T> FfiReturn for *mut T {
    type C = *mut T;
    fn into_c(self) -> *mut T {
        self
    }
    fn panicked() -> *mut T {
        std::ptr::null_mut()
    }
}

impl<T> FfiReturn for *const T {
    type C = *const T;
    fn into_c(self) -> *const T {
        self
    }
    fn panicked() -> *const T {
        std::ptr::null()
    }
}

macro_rules! plain_return {
    ($($t:ty => $v:expr),*) => {$(
        impl FfiReturn for $t {
            type C = $t;
            fn into_c(self) -> $t {
                self
            }
            fn panicked() -> $t {
                $v
            }
        }
    )*};
}

plain_return!(usize => 0, u32 => 0, u64 => 0, () => ());

/// Runs an export's body, catching panics. See the module documentation.
pub(crate) fn boundary<R: FfiReturn>(body: impl FnOnce() -> R) -> R::C {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(r) => r.into_c(),
        Err(payload) => {
            set_last_error(chronica_status::CHRONICA_ERR_PANIC, &panic_text(&*payload));
            R::panicked()
        }
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Failure;

    #[test]
    fn a_panic_becomes_the_panic_status() {
        let s = boundary(|| -> FfiResult { panic!("boom") });
        assert_eq!(s, chronica_status::CHRONICA_ERR_PANIC);
        let p: *mut u8 = boundary(|| -> *mut u8 { panic!("boom") });
        assert!(p.is_null());
        assert_eq!(boundary(|| -> usize { panic!("boom") }), 0);
    }

    #[test]
    fn a_failure_keeps_its_status() {
        let s = boundary(|| -> FfiResult { Err(Failure::null("uid")) });
        assert_eq!(s, chronica_status::CHRONICA_ERR_NULL_ARGUMENT);
    }

    /// Every `extern "C" fn` in the crate must run its body through
    /// `boundary(` as its first statement.
    #[test]
    fn every_export_uses_the_boundary() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut exports = 0;
        let mut no_mangle = 0;
        let mut missing = Vec::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            no_mangle += text.matches(concat!("#[no_", "mangle]")).count();
            let mut rest = text.as_str();
            while let Some(at) = rest.find("extern \"C\" fn ") {
                let after = &rest[at..];
                let line_start = rest[..at].rfind('\n').map_or(0, |i| i + 1);
                let prefix = rest[line_start..at].trim();
                let is_decl = prefix == "pub" || prefix == "pub unsafe";
                let name: String = after["extern \"C\" fn ".len()..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                rest = &after[1..];
                if !is_decl {
                    continue; // a function-pointer type, not a definition
                }
                exports += 1;
                let body = &after[after.find('{').unwrap() + 1..];
                let first = body.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("//"));
                if !first.is_some_and(|l| l.starts_with("boundary(")) {
                    missing.push(format!("{}: {name}", path.display()));
                }
            }
        }
        assert!(exports > 40, "found only {exports} exports");
        assert_eq!(exports, no_mangle, "every exported symbol must be a checked `pub extern \"C\" fn`");
        assert!(missing.is_empty(), "exports not using boundary(): {missing:?}");
    }
}
