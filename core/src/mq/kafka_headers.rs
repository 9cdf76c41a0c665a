//! Reading a received Kafka record's headers, one with a header name that
//! is not UTF-8 included.
//!
//! rdkafka panics on such a name: `BorrowedHeaders::try_get` unwraps the
//! name's `CStr::to_str` (0.39, and its master as of session 14), and every
//! other accessor goes through `try_get`: `get`, `iter`, and `get_as` /
//! `try_get_as`, which convert only the value. Nor can the name be checked
//! first: its bytes are reachable only through librdkafka's C functions,
//! which take `unsafe`, and this crate forbids it. So the panic cannot be
//! avoided, only caught: the record is then unreadable (the layer counts
//! and dead-letters it, and acknowledges it so the partition moves on).
//!
//! The catch alone left the panic hook printing its message to stderr
//! once per such record, a stream of "panicked at" lines for records the
//! layer handled as designed. After the first one (printed, the one trace
//! on stderr), a panic hook is installed, once per process, that stays
//! silent for a panic inside [`read`] on the thread reading, and hands
//! every other panic to the hook that was in place before. Installed only
//! once such a record arrived, it leaves the hook of every other process
//! alone; a hook the host sets later replaces it (and the messages come
//! back, harmlessly).

use std::borrow::Cow;
use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::sync::Once;

use rdkafka::message::Headers;

thread_local! {
    /// Whether this thread is inside [`read`]: its panic is expected and
    /// caught, so the hook stays silent for it.
    static READING: Cell<bool> = const { Cell::new(false) };
}

static QUIET: Once = Once::new();

/// Clears [`READING`] however [`read`] ends.
struct Reading;

impl Reading {
    fn enter() -> Self {
        READING.with(|r| r.set(true));
        Reading
    }
}

impl Drop for Reading {
    fn drop(&mut self) {
        READING.with(|r| r.set(false));
    }
}

/// Installs, once, the hook that stays silent for panics inside [`read`].
fn quiet_from_now_on() {
    QUIET.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !READING.with(Cell::get) {
                previous(info);
            }
        }));
    });
}

/// The names and values of headers `h` (a value that is not UTF-8 read
/// lossily, a missing one as empty), or why they cannot be read: a name
/// is not UTF-8. Only reads happen inside the catch, so nothing is left
/// half-changed by the unwinding.
pub(super) fn read<H: Headers>(h: &H) -> Result<Vec<(Cow<'static, str>, String)>, String> {
    let all = || {
        h.iter()
            .map(|h| {
                (super::header_name(h.key), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
            })
            .collect()
    };
    let reading = Reading::enter();
    let read = std::panic::catch_unwind(AssertUnwindSafe(all));
    drop(reading);
    read.map_err(|_| {
        quiet_from_now_on();
        "kafka: a header name of the record is not UTF-8".to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{Header, OwnedHeaders};

    /// Headers whose second name is not UTF-8, failing as rdkafka's
    /// `BorrowedHeaders::try_get` does (which safe code cannot make).
    struct BadName;

    impl Headers for BadName {
        fn count(&self) -> usize {
            2
        }
        fn try_get(&self, idx: usize) -> Option<Header<'_, &[u8]>> {
            let name: &[u8] = if idx == 0 { b"chronica-id" } else { b"\xffname" };
            (idx < 2).then(|| Header { key: std::str::from_utf8(name).unwrap(), value: Some(&b"7"[..]) })
        }
    }

    thread_local! {
        /// Panics of this thread that reached the hook in place before.
        static SHOWN: Cell<usize> = const { Cell::new(0) };
    }

    #[test]
    fn headers_are_read() {
        let h = OwnedHeaders::new()
            .insert(Header { key: "chronica-id", value: Some("7") })
            .insert(Header { key: "x", value: Some(&b"\xff"[..]) })
            .insert::<[u8]>(Header { key: "none", value: None });
        let read = read(&h).unwrap();
        let read: Vec<(&str, &str)> = read.iter().map(|(k, v)| (&**k, v.as_str())).collect();
        assert_eq!(read, [("chronica-id", "7"), ("x", "\u{fffd}"), ("none", "")]);
    }

    /// A record with a bad header name is unreadable, and only the first
    /// such panic of the process reaches the panic hook: before, every one
    /// did, and the default hook printed each to stderr.
    #[test]
    fn a_bad_header_name_is_unreadable_and_shown_once() {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            SHOWN.with(|s| s.set(s.get() + 1));
            default(info);
        }));
        for _ in 0..3 {
            assert!(read(&BadName).unwrap_err().contains("not UTF-8"));
        }
        assert_eq!(SHOWN.with(Cell::get), 1, "every bad record's panic was shown");
        // Any other panic still reaches the hook in place before.
        assert!(std::panic::catch_unwind(|| panic!("elsewhere")).is_err());
        assert_eq!(SHOWN.with(Cell::get), 2, "a panic outside the read was silenced");
    }
}
