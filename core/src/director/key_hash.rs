//! An event's routing key, hashed at most once per emit: every consumer
//! group picks its member by the same hash, and hashing a 1 MiB key once
//! per group made an emit's cost grow with key size times groups.

use std::cell::OnceCell;

use super::routing::stable_hash;

/// A routing key and its [`stable_hash`], computed the first time a group
/// asks for it: an emit that no group picks by key never pays for it.
#[derive(Debug)]
pub(crate) struct KeyHash<'k> {
    key: Option<&'k [u8]>,
    hash: OnceCell<u64>,
}

impl<'k> KeyHash<'k> {
    pub(crate) fn new(key: Option<&'k [u8]>) -> Self {
        Self { key, hash: OnceCell::new() }
    }

    /// The key's hash, or `None` for an event without a key.
    pub(crate) fn get(&self) -> Option<u64> {
        let key = self.key?;
        Some(*self.hash.get_or_init(|| stable_hash(key)))
    }
}

#[cfg(test)]
mod tests {
    use super::super::routing::HASHED;
    use crate::{Batch, Director, Message, NodeError, NodeOptions};

    /// Hashes of a key on this thread during `f`.
    fn hashes_during(f: impl FnOnce()) -> usize {
        let before = HASHED.get();
        f();
        HASHED.get() - before
    }

    /// A keyed emit hashes its key once however many groups pick a member
    /// by it (a 1 MiB key was hashed once per group), and an emit that no
    /// group takes (no key, or no group member subscribed) not at all.
    #[test]
    fn a_key_is_hashed_once_per_emit() {
        let d = Director::builder().build().unwrap();
        let node = |_: &Batch| -> Result<(), NodeError> { Ok(()) };
        for g in 0..16 {
            for m in 0..2 {
                let opts = NodeOptions::default().group(format!("g{g}")).topic("t.*");
                d.register_with(&format!("n{g}-{m}"), node, opts).unwrap();
            }
        }
        let key = vec![7u8; 1 << 20];
        assert_eq!(
            hashes_during(|| {
                d.emit(Message::new("t.a", "x").key(key.clone())).unwrap();
            }),
            1
        );
        assert_eq!(
            hashes_during(|| {
                d.emit(Message::new("t.a", "x")).unwrap();
            }),
            0
        );
        assert_eq!(
            hashes_during(|| {
                d.emit(Message::new("u", "x").key(key.clone())).unwrap();
            }),
            0
        );
        d.close(std::time::Duration::from_secs(5)).unwrap();
    }
}
