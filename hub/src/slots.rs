//! How many connections the hub serves at once (`--max-connections`).
//!
//! Each connection is one file descriptor; so is each webhook POST, the
//! broker's sockets and the hub's own files. With the cap above the
//! process's open-file limit, connections that nobody closes exhaust the
//! descriptors before the cap is reached, and webhooks, the broker and
//! `accept` itself fail. So the default cap stays [`RESERVE`] below the
//! limit, and a cap set above that is kept but warned about.

use rustix::process::{getrlimit, Resource};

/// The default cap where the open-file limit allows it.
pub(crate) const DEFAULT: usize = 1_024;

/// Descriptors kept out of the cap for everything else the hub opens.
const RESERVE: u64 = 64;

/// The cap to serve with: `asked` (the setting) or the default, fitted to
/// the process's open-file limit.
pub(crate) fn max_connections(asked: Option<usize>) -> usize {
    let (cap, warning) = fit(asked, getrlimit(Resource::Nofile).current);
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    // More would make the semaphore panic; that many is unlimited anyway.
    cap.min(tokio::sync::Semaphore::MAX_PERMITS)
}

/// The cap for `asked` under a soft open-file limit of `open_files`
/// (`None`: unlimited), and a warning when the setting risks running out.
fn fit(asked: Option<usize>, open_files: Option<u64>) -> (usize, Option<String>) {
    let room = open_files
        .map(|n| usize::try_from(n.saturating_sub(RESERVE).max(n / 2).max(1)).unwrap_or(usize::MAX));
    match (asked, room) {
        (None, room) => (room.map_or(DEFAULT, |r| r.min(DEFAULT)), None),
        (Some(cap), Some(room)) if cap > room => {
            let limit = open_files.unwrap_or_default();
            let warning = format!(
                "max_connections {cap} leaves fewer than {RESERVE} of the {limit} open files allowed \
                 (ulimit -n) for webhooks and the broker; raise the limit or lower max_connections"
            );
            (cap, Some(warning))
        }
        (Some(cap), _) => (cap, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_stays_below_the_open_file_limit() {
        assert_eq!(fit(None, None), (DEFAULT, None));
        assert_eq!(fit(None, Some(1 << 20)), (DEFAULT, None));
        assert_eq!(fit(None, Some(1024)), (960, None));
        assert_eq!(fit(None, Some(256)), (192, None));
        assert_eq!(fit(None, Some(100)), (50, None));
    }

    #[test]
    fn a_setting_is_kept_and_warned_about_when_it_risks_the_limit() {
        assert_eq!(fit(Some(8), Some(256)), (8, None));
        assert_eq!(fit(Some(5000), None), (5000, None));
        let (cap, warning) = fit(Some(1024), Some(1024));
        assert_eq!(cap, 1024);
        assert!(warning.is_some_and(|w| w.contains("max_connections 1024")));
    }
}
