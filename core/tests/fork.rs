//! A director (and a fabric) made before `fork()`, in the child: its
//! threads did not survive the fork, so every call is refused with
//! `Forked` and `close` and drop return at once; a director made in the
//! child works. Before, the child's emits were accepted and never
//! delivered, and its `close` (or drop) waited forever for threads that
//! were not there. Its own test binary, so that no other test's thread is
//! running when the test forks.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chronica::{Batch, Director, Distributed, DistributedConfig, Error, Message, NodeError};

/// A node counting the user events it receives in `n`.
fn counting(n: &Arc<AtomicUsize>) -> impl Fn(&Batch) -> Result<(), NodeError> + Send + Sync + 'static {
    let n = n.clone();
    move |b: &Batch| {
        n.fetch_add(b.iter().filter(|e| !e.is_root()).count(), Ordering::SeqCst);
        Ok(())
    }
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

fn forked<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Forked))
}

/// The child's checks; the exit status names the first that failed.
fn in_child(d: Director, fabric: Distributed) -> i32 {
    use chronica::mq::MqError;
    let fabric_forked = |r: Result<(), MqError>| matches!(r, Err(MqError::Engine(Error::Forked)));
    let checks: [(i32, bool); 9] = [
        (10, forked(d.emit(Message::new("t", "in the child")))),
        (11, forked(d.register("b", counting(&Arc::new(AtomicUsize::new(0)))))),
        (12, forked(d.stats("a")) && forked(d.node_settings("a"))),
        (13, d.nodes().is_empty()),
        (14, forked(d.unregister("a"))),
        (15, forked(d.close(Duration::from_secs(1)))),
        (16, fabric_forked(fabric.emit(Message::new("t", "x")).map(drop))),
        (17, fabric_forked(fabric.join_group("g"))),
        (18, fabric_forked(fabric.close(Duration::from_secs(1)).map(drop))),
    ];
    if let Some((code, _)) = checks.iter().find(|(_, ok)| !ok) {
        return *code;
    }
    drop(fabric);
    drop(d);
    // A director of the child's own works.
    let n = Arc::new(AtomicUsize::new(0));
    let own = Director::new().unwrap();
    own.register("c", counting(&n)).unwrap();
    own.emit(Message::new("t", "mine")).unwrap();
    if !wait_for(|| n.load(Ordering::SeqCst) == 1) {
        return 20;
    }
    match own.close(Duration::from_secs(5)) {
        Ok(0) => 0,
        _ => 21,
    }
}

#[test]
fn a_director_made_before_a_fork_takes_no_calls_in_the_child() {
    let d = Director::builder().trust_token("t0k").build().unwrap();
    let n = Arc::new(AtomicUsize::new(0));
    d.register("a", counting(&n)).unwrap();
    let cfg = DistributedConfig { instance_id: "parent".into(), ..Default::default() };
    let fabric = Distributed::connect(&d, "memory://fork-test", cfg).unwrap();
    d.emit(Message::new("t", "before")).unwrap();
    assert!(wait_for(|| n.load(Ordering::SeqCst) == 1));

    // SAFETY: the child runs only the checks above and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| in_child(d.clone(), fabric)))
            .unwrap_or(99);
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    let status = wait_child(pid, Duration::from_secs(60));
    assert_eq!(status, Some(0), "the child's check with this exit status failed (None: it hung)");

    // The parent's director goes on.
    d.emit(Message::new("t", "after")).unwrap();
    assert!(wait_for(|| n.load(Ordering::SeqCst) == 2));
    assert_eq!(d.close(Duration::from_secs(5)), Ok(0));
}

/// The child's exit status, or `None` (the child killed) when it has not
/// ended by `limit`.
fn wait_child(pid: libc::pid_t, limit: Duration) -> Option<i32> {
    let until = Instant::now() + limit;
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child, without blocking.
        let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if done == pid {
            return Some(if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { 128 });
        }
        if Instant::now() >= until {
            // SAFETY: our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
