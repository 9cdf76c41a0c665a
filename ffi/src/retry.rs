//! Integers from C turned into the engine's overflow and retry settings.

use std::time::Duration;

use chronica::{Backoff, Overflow, RetryPolicy};

use crate::status::{Failure, FfiResult};

/// What a full user lane does. Passed to the setters as a plain integer
/// (`chronica_overflow`), checked, so an unknown value is refused with
/// `CHRONICA_ERR_INVALID_ARGUMENT` instead of being undefined behaviour.
#[allow(non_camel_case_types)]
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum chronica_overflow {
    /// Drop the oldest waiting event to make room (the default).
    CHRONICA_OVERFLOW_DROP_OLDEST = 0,
    /// Drop the arriving event.
    CHRONICA_OVERFLOW_DROP_NEWEST = 1,
    /// Make the emitter wait up to the block timeout, then fail with
    /// `CHRONICA_ERR_QUEUE_FULL`.
    CHRONICA_OVERFLOW_BLOCK = 2,
}

/// An overflow policy as C passes it: a plain integer, range-checked.
/// In the header this is the `chronica_overflow` typedef itself.
#[allow(non_camel_case_types)]
pub type chronica_overflow_t = u32;

/// Converts and checks an overflow value from C.
pub(crate) fn overflow(raw: chronica_overflow_t) -> FfiResult<Overflow> {
    use chronica_overflow::*;
    match raw {
        x if x == CHRONICA_OVERFLOW_DROP_OLDEST as u32 => Ok(Overflow::DropOldest),
        x if x == CHRONICA_OVERFLOW_DROP_NEWEST as u32 => Ok(Overflow::DropNewest),
        x if x == CHRONICA_OVERFLOW_BLOCK as u32 => Ok(Overflow::Block),
        _ => Err(Failure::invalid(format!("{raw} is not a chronica_overflow value"))),
    }
}

/// Backoff shape: every re-attempt waits `initial_ms`.
pub const CHRONICA_BACKOFF_CONSTANT: u32 = 0;
/// Backoff shape: `initial_ms * (k + 1)` for re-attempt `k`, capped at
/// `max_ms`.
pub const CHRONICA_BACKOFF_LINEAR: u32 = 1;
/// Backoff shape: `initial_ms * multiplier^k`, capped at `max_ms`.
pub const CHRONICA_BACKOFF_EXPONENTIAL: u32 = 2;

/// Converts and checks a backoff shape from C (a `CHRONICA_BACKOFF_*`
/// value, a plain integer like the overflow policy).
pub(crate) fn backoff(raw: u32) -> FfiResult<Backoff> {
    match raw {
        CHRONICA_BACKOFF_CONSTANT => Ok(Backoff::Constant),
        CHRONICA_BACKOFF_LINEAR => Ok(Backoff::Linear),
        CHRONICA_BACKOFF_EXPONENTIAL => Ok(Backoff::Exponential),
        other => Err(Failure::invalid(format!("{other} is not a CHRONICA_BACKOFF_* value"))),
    }
}

/// Builds a retry policy from C's integers, keeping the jitter and the
/// backoff shape of `kept`; refuses what the engine would refuse (so the
/// setter fails, not a later call).
pub(crate) fn policy(
    initial_ms: u64,
    max_ms: u64,
    multiplier: f64,
    max_retries: u32,
    kept: &RetryPolicy,
) -> FfiResult<RetryPolicy> {
    let policy = RetryPolicy {
        backoff: kept.backoff,
        initial_delay: Duration::from_millis(initial_ms),
        multiplier,
        max_delay: Duration::from_millis(max_ms),
        jitter: kept.jitter,
        max_retries: (max_retries != 0).then_some(max_retries),
    };
    policy.validate()?;
    Ok(policy)
}

/// `policy` with the backoff shape `raw`, checked as a whole: a shape the
/// delays do not suit (exponential with a multiplier below 1, say) is
/// refused.
pub(crate) fn with_backoff(policy: &RetryPolicy, raw: u32) -> FfiResult<RetryPolicy> {
    let policy = RetryPolicy { backoff: backoff(raw)?, ..policy.clone() };
    policy.validate()?;
    Ok(policy)
}

/// Checks a jitter value from C by the engine's own rule.
pub(crate) fn jitter(j: f64) -> FfiResult<f64> {
    RetryPolicy { jitter: j, ..RetryPolicy::default() }.validate()?;
    Ok(j)
}

/// Fails when a size is zero.
pub(crate) fn nonzero(n: usize, what: &str) -> FfiResult<usize> {
    if n == 0 {
        Err(Failure::invalid(format!("{what} must be at least 1")))
    } else {
        Ok(n)
    }
}
