//! De-duplication by (origin, id) within a time window, bounded in size.
//!
//! Owned by one consumer task (no lock): each subscription keeps its own,
//! because one broker message legitimately arrives once per subscription
//! (the instance's broadcast group and each of its consumer groups).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Dedup {
    window: Duration,
    capacity: usize,
    seen: HashSet<(Arc<str>, u64)>,
    order: VecDeque<(Arc<str>, u64, Instant)>,
    /// The last origin seen, to share its allocation between entries.
    last_origin: Option<Arc<str>>,
}

impl Dedup {
    pub(crate) fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity: capacity.max(1),
            seen: HashSet::new(),
            order: VecDeque::new(),
            last_origin: None,
        }
    }

    /// True the first time (origin, id) is seen within the window.
    pub(crate) fn first_time(&mut self, origin: &str, id: u64, now: Instant) -> bool {
        while let Some((o, i, at)) = self.order.front() {
            if now.duration_since(*at) <= self.window && self.order.len() < self.capacity {
                break;
            }
            self.seen.remove(&(o.clone(), *i));
            self.order.pop_front();
        }
        let origin = match &self.last_origin {
            Some(o) if &**o == origin => o.clone(),
            _ => {
                let o: Arc<str> = origin.into();
                self.last_origin = Some(o.clone());
                o
            }
        };
        if !self.seen.insert((origin.clone(), id)) {
            return false;
        }
        self.order.push_back((origin, id, now));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_capacity() {
        let t0 = Instant::now();
        let mut d = Dedup::new(Duration::from_secs(10), 3);
        assert!(d.first_time("a", 1, t0));
        assert!(!d.first_time("a", 1, t0));
        assert!(d.first_time("b", 1, t0));
        assert!(d.first_time("a", 2, t0));
        assert!(d.first_time("a", 3, t0)); // evicts (a, 1): capacity 3
        assert!(d.first_time("a", 1, t0));
        let later = t0 + Duration::from_secs(11);
        assert!(d.first_time("a", 3, later)); // expired
    }
}
