//! Lane capacities from C, checked by the setters against the engine's
//! bounds so that a refusal comes at the setter, not at a later call.

use crate::status::{Failure, FfiResult};

/// The largest lane capacity, in events, of a director's or node's lanes
/// (`queue_capacity`, `root_capacity`) and of a bus subscription
/// (`buffer`): 2^31 - 1, the engine's `MAX_CAPACITY`.
pub const CHRONICA_MAX_CAPACITY: usize = 2_147_483_647;

const _: () = assert!(CHRONICA_MAX_CAPACITY == chronica::MAX_CAPACITY);

/// Checks a lane capacity: 1 to `CHRONICA_MAX_CAPACITY`.
pub(crate) fn lane(n: usize, what: &str) -> FfiResult<usize> {
    if n == 0 || n > CHRONICA_MAX_CAPACITY {
        Err(Failure::invalid(format!("{what} must be 1 to {CHRONICA_MAX_CAPACITY}, got {n}")))
    } else {
        Ok(n)
    }
}
