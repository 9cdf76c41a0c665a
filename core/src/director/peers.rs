//! A newcomer's peer list (SPEC 2.7): the uids routed when it registered,
//! kept as a persistent snapshot and rendered as its
//! `chronica.pull_current_state` payload only when that event leaves the
//! root lane. Rendered at registration, every node not yet delivering
//! (registered disconnected, a hub stream before its socket attaches) held
//! the whole list as JSON: O(n^2) bytes over n such nodes, 575 MiB at
//! 5,000 nodes with 36-byte uids. A snapshot shares its chunks with the
//! routes (see `chunked.rs`): it costs about n/64 pointers, plus the
//! chunks that later changes copy.

use std::sync::Arc;

use bytes::Bytes;

use crate::director::chunked::{Chunked, Keyed};

impl Keyed for Arc<str> {
    fn key(&self) -> &str {
        self
    }
}

/// The uids of the nodes routed at one moment, in uid order. Uids only,
/// not routes: a snapshot of routes would keep the fibers of nodes that
/// left alive (with their hooks), and two waiting newcomers would hold
/// each other's fiber in a cycle that nothing frees.
#[derive(Clone, Default)]
pub(crate) struct Peers(Chunked<Arc<str>>);

impl Peers {
    /// Adds `uid` (a node routed now).
    pub(super) fn insert(&mut self, uid: Arc<str>) {
        self.0.insert(uid);
    }

    /// Takes out `uid` (a node that left).
    pub(super) fn remove(&mut self, uid: &str) {
        self.0.remove(uid);
    }

    /// `{"peers": [...]}`, byte for byte what `serde_json::json!` made of
    /// the sorted list when it was rendered at registration.
    pub(crate) fn render(&self) -> Bytes {
        let list: Vec<&str> = self.0.iter().map(|u| &**u).collect();
        serde_json::json!({ "peers": list }).to_string().into()
    }
}

impl std::fmt::Debug for Peers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Peers({} uids)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rendering is what `json!` makes of the sorted list, escapes
    /// included, whatever order the uids came and went in.
    #[test]
    fn renders_the_sorted_uids_as_the_list_did() {
        let mut peers = Peers::default();
        assert_eq!(&peers.render()[..], br#"{"peers":[]}"#);
        let uids = ["zed", "a\"b", "\u{e9}t\u{e9}", "alpha", "gone", "tab\t"];
        for u in uids {
            peers.insert(u.into());
        }
        peers.remove("gone");
        let mut want: Vec<&str> = uids.iter().copied().filter(|u| *u != "gone").collect();
        want.sort_unstable();
        assert_eq!(peers.render(), serde_json::json!({ "peers": want }).to_string());
    }
}
