//! Who waits for whom, across every director of the process: a callback
//! that unregisters another node waits for that node's last callback
//! (SPEC 2.7), and one that emits under `block` waits for room in another
//! node's lane. Each such wait from a node's worker thread is an edge here
//! (fiber to fiber, by address); a wait that would close a circle of them
//! would never end, so it is not made (SPEC 2.9: no call from a callback
//! deadlocks). Two nodes unregistering each other from their callbacks:
//! the first waits, the second sees the circle and does not.
//!
//! Edges live only while their wait does; the waiting fiber is alive
//! then (its worker is the thread waiting), and the fiber waited for is
//! held by the waiter, so no address is reused while it is an edge.

use parking_lot::Mutex;

static EDGES: Mutex<Vec<(usize, usize)>> = parking_lot::const_mutex(Vec::new());

/// One wait in progress; the edge goes when it is dropped.
#[derive(Debug)]
pub(crate) struct Waiting {
    edge: (usize, usize),
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut edges = EDGES.lock();
        if let Some(i) = edges.iter().position(|e| *e == self.edge) {
            edges.swap_remove(i);
        }
    }
}

/// Records that fiber `waiter` waits for fiber `target`, unless `target`
/// waits, itself or through others, for `waiter` (or is `waiter`): then
/// `None`, and the caller must not wait.
pub(crate) fn begin(waiter: usize, target: usize) -> Option<Waiting> {
    let mut edges = EDGES.lock();
    if reaches(&edges, target, waiter) {
        return None;
    }
    edges.push((waiter, target));
    Some(Waiting { edge: (waiter, target) })
}

/// Whether a chain of waits leads from `from` to `to` (or they are one).
fn reaches(edges: &[(usize, usize)], from: usize, to: usize) -> bool {
    let mut seen = vec![from];
    let mut next = 0;
    while let Some(&at) = seen.get(next) {
        if at == to {
            return true;
        }
        for &(_, t) in edges.iter().filter(|(w, _)| *w == at) {
            if !seen.contains(&t) {
                seen.push(t);
            }
        }
        next += 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    // Addresses no fiber has (odd), so other tests' edges never meet these.
    const A: usize = 0x1001;
    const B: usize = 0x2001;
    const C: usize = 0x3001;

    #[test]
    fn a_wait_that_closes_a_circle_is_refused() {
        assert!(begin(A, A).is_none(), "a node never waits for itself");
        let ab = begin(A, B).expect("nothing waits yet");
        let bc = begin(B, C).expect("no circle");
        assert!(begin(C, A).is_none(), "C -> A -> B -> C");
        assert!(begin(B, A).is_none(), "B -> A -> B");
        drop(ab);
        let ca = begin(C, A).expect("A waits for nobody now");
        drop((bc, ca));
        assert!(EDGES.lock().iter().all(|(w, _)| ![A, B, C].contains(w)), "every edge gone");
    }
}
