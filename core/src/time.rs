//! Deadlines from caller-given durations. A caller may pass any duration
//! (`Duration::MAX` meaning "forever"), but `Instant + Duration` panics
//! past the clock's range, so deadlines saturate at a far horizon instead.

use std::time::{Duration, Instant};

/// Far enough to mean "never" (about 34 years), near enough for any clock.
const HORIZON: Duration = Duration::from_secs(1 << 30);

/// `now + d`, or `now + HORIZON` when `d` is longer.
pub(crate) fn after(now: Instant, d: Duration) -> Instant {
    now + d.min(HORIZON)
}

/// `Instant::now() + d`, saturated as [`after`].
pub(crate) fn deadline(d: Duration) -> Instant {
    after(Instant::now(), d)
}
