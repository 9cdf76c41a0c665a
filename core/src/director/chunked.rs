//! A sorted, persistent vector: entries kept in order of their key in
//! shared chunks of at most `2 * CHUNK` entries. Cloning it copies one
//! pointer per chunk, and a change copies only the chunk it touches, so a
//! routing snapshot with n entries is remade in O(n / CHUNK + CHUNK)
//! rather than O(n) deep copies (what made registering 10,000 nodes take
//! seconds). Readers holding the old snapshot keep the old chunks.

use std::sync::Arc;

/// Entries per chunk after a split; a chunk splits past twice this.
const CHUNK: usize = 64;

/// What a [`Chunked`] is sorted by.
pub(crate) trait Keyed {
    /// The entry's key; unique within one [`Chunked`].
    fn key(&self) -> &str;
}

/// Entries sorted by key, in shared chunks (see the module's doc).
#[derive(Debug)]
pub(crate) struct Chunked<T> {
    /// Never empty chunks, in key order.
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self { chunks: Vec::new(), len: 0 }
    }
}

impl<T> Clone for Chunked<T> {
    fn clone(&self) -> Self {
        Self { chunks: self.chunks.clone(), len: self.len }
    }
}

impl<T: Keyed + Clone> Chunked<T> {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The entries in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The chunk that holds `key` if any entry does: the first whose last
    /// key is not below it (else the last chunk, where it would go).
    fn chunk_for(&self, key: &str) -> usize {
        let at = self.chunks.partition_point(|c| c.last().is_some_and(|t| t.key() < key));
        at.min(self.chunks.len().saturating_sub(1))
    }

    /// Calls `f` for each entry in key order: [`iter`](Self::iter) without
    /// the flattening iterator's check per entry (the emit path's loop).
    pub(crate) fn for_each<'a>(&'a self, mut f: impl FnMut(&'a T)) {
        for chunk in &self.chunks {
            for t in chunk.iter() {
                f(t);
            }
        }
    }

    /// The entry with `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&T> {
        let chunk = self.chunks.get(self.chunk_for(key))?;
        chunk.binary_search_by(|t| t.key().cmp(key)).ok().map(|i| &chunk[i])
    }

    /// Puts `entry` in its place, replacing the entry with its key if one
    /// is there.
    pub(crate) fn insert(&mut self, entry: T) {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(vec![entry]));
            self.len = 1;
            return;
        }
        let c = self.chunk_for(entry.key());
        let chunk = Arc::make_mut(&mut self.chunks[c]);
        match chunk.binary_search_by(|t| t.key().cmp(entry.key())) {
            Ok(i) => chunk[i] = entry,
            Err(i) => {
                chunk.insert(i, entry);
                self.len += 1;
                if chunk.len() > 2 * CHUNK {
                    let upper = chunk.split_off(CHUNK);
                    self.chunks.insert(c + 1, Arc::new(upper));
                }
            }
        }
    }

    /// Takes out the entry with `key`, if there is one.
    pub(crate) fn remove(&mut self, key: &str) -> Option<T> {
        let c = self.chunk_for(key);
        let i = self.chunks.get(c)?.binary_search_by(|t| t.key().cmp(key)).ok()?;
        let chunk = Arc::make_mut(&mut self.chunks[c]);
        let entry = chunk.remove(i);
        if chunk.is_empty() {
            self.chunks.remove(c);
        }
        self.len -= 1;
        Some(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone, PartialEq)]
    struct E(String, u32);

    impl Keyed for E {
        fn key(&self) -> &str {
            &self.0
        }
    }

    /// A change copies the chunk it touches (and the one a split makes),
    /// nothing else: the snapshot before it shares every other chunk.
    #[test]
    fn a_change_shares_the_chunks_it_leaves_alone() {
        let mut c: Chunked<E> = Chunked::default();
        for k in 0..10_000u32 {
            c.insert(E(format!("{:05}", k * 2), k));
        }
        let shared = |a: &Chunked<E>, b: &Chunked<E>| {
            a.chunks.iter().filter(|x| b.chunks.iter().any(|y| Arc::ptr_eq(x, y))).count()
        };
        let before = c.clone();
        let n = before.chunks.len();
        assert!(n > 50, "{n} chunks");
        c.insert(E("05001".into(), 0));
        assert!(shared(&before, &c) >= n - 1, "{} of {n} chunks shared after an insert", shared(&before, &c));
        let before = c.clone();
        c.remove("05001");
        assert_eq!(shared(&before, &c), before.chunks.len() - 1, "after a remove");
        assert_eq!(before.get("05001").map(|e| e.1), Some(0), "the old snapshot keeps the entry");
    }

    proptest! {
        /// Against a `BTreeMap`, across chunk splits and emptied chunks;
        /// a snapshot taken before the changes stays as it was.
        #[test]
        fn behaves_as_a_sorted_map(ops in prop::collection::vec((any::<bool>(), 0..400u32, any::<u32>()), 1..1500)) {
            let mut c: Chunked<E> = Chunked::default();
            let mut model = BTreeMap::new();
            let mut before = None;
            for (n, &(add, k, v)) in ops.iter().enumerate() {
                let key = format!("{k:03}");
                if add {
                    c.insert(E(key.clone(), v));
                    model.insert(key.clone(), v);
                } else {
                    prop_assert_eq!(c.remove(&key).map(|e| e.1), model.remove(&key));
                }
                prop_assert_eq!(c.get(&key).map(|e| e.1), model.get(&key).copied());
                if n == ops.len() / 2 {
                    before = Some((c.clone(), model.clone()));
                }
            }
            let listed: Vec<(String, u32)> = c.iter().map(|e| (e.0.clone(), e.1)).collect();
            prop_assert_eq!(listed, model.into_iter().collect::<Vec<_>>());
            prop_assert_eq!(c.len, c.iter().count());
            let mut n = 0;
            c.for_each(|_| n += 1);
            prop_assert_eq!(n, c.len);
            prop_assert!(c.chunks.iter().all(|ch| !ch.is_empty() && ch.len() <= 2 * CHUNK));
            if let Some((snapshot, then)) = before {
                let listed: Vec<(String, u32)> = snapshot.iter().map(|e| (e.0.clone(), e.1)).collect();
                prop_assert_eq!(listed, then.into_iter().collect::<Vec<_>>());
            }
        }
    }
}
