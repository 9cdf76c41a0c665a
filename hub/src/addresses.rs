//! How many connections one remote address may hold at once
//! (`--max-connections-per-address`).
//!
//! The slots of `--max-connections` are shared by everybody: one client
//! that keeps reconnecting can hold them all. With a limit per address it
//! holds at most that many, and the others stay free for everybody else.
//! Off by default (docs/DECISIONS.md): the hub listens on 127.0.0.1 unless
//! told otherwise, and behind a proxy every client shares the proxy's
//! address, so a default limit would be a second, smaller global cap.
//!
//! The count of an address lives as long as its connections: the table
//! holds only addresses with a connection open, so it never outgrows the
//! connections themselves.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// The open connections of each remote address, under a limit.
#[derive(Debug)]
pub(crate) struct PerAddress {
    limit: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerAddress {
    /// A table allowing `limit` connections per address.
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self { limit, open: Mutex::default() })
    }

    /// One more connection from `ip`, held until the slot is dropped, or
    /// `None` when `ip` holds `limit` already. An IPv4 address mapped into
    /// IPv6 (`::ffff:a.b.c.d`, how a listener on `[::]` sees IPv4 peers)
    /// counts as the IPv4 address.
    pub(crate) fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<AddressSlot> {
        let ip = ip.to_canonical();
        let mut open = self.open.lock();
        if open.get(&ip).is_some_and(|&n| n >= self.limit) || self.limit == 0 {
            return None;
        }
        *open.entry(ip).or_default() += 1;
        Some(AddressSlot { table: self.clone(), ip })
    }

    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.open.lock().len()
    }
}

/// One connection's place in its address's count.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    table: Arc<PerAddress>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.open.lock();
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_address_holds_at_most_the_limit_and_a_freed_slot_is_reusable() {
        let table = PerAddress::new(2);
        let a1 = table.try_acquire(ip("127.0.0.1")).unwrap();
        let _a2 = table.try_acquire(ip("127.0.0.1")).unwrap();
        assert!(table.try_acquire(ip("127.0.0.1")).is_none());
        let _b = table.try_acquire(ip("127.0.0.2")).expect("another address has its own count");
        drop(a1);
        assert!(table.try_acquire(ip("127.0.0.1")).is_some(), "the freed slot");
    }

    #[test]
    fn a_mapped_ipv4_address_counts_as_the_ipv4_one() {
        let table = PerAddress::new(1);
        let _v4 = table.try_acquire(ip("10.0.0.1")).unwrap();
        assert!(table.try_acquire(ip("::ffff:10.0.0.1")).is_none());
        assert!(table.try_acquire(ip("::1")).is_some());
    }

    #[test]
    fn an_address_leaves_the_table_with_its_last_connection() {
        let table = PerAddress::new(3);
        let slots: Vec<_> = (0..3).filter_map(|_| table.try_acquire(ip("::1"))).collect();
        assert!(table.try_acquire(ip("::1")).is_none());
        assert_eq!(table.addresses(), 1);
        drop(slots);
        assert_eq!(table.addresses(), 0);
    }
}
