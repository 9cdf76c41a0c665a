//! The retry policy and the backoff it computes.

use std::time::Duration;

/// How the delay between re-attempts grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backoff {
    /// Always `initial_delay`.
    Constant,
    /// `initial_delay * (k + 1)` for re-attempt `k`, capped at `max_delay`.
    Linear,
    /// `initial_delay * multiplier^k`, capped at `max_delay` (the default).
    #[default]
    Exponential,
}

/// How a fiber retries a failed batch: on a timer, with backoff (exponential
/// by default) and jitter, optionally giving up after `max_retries`.
///
/// `initial_delay` must be above zero: every backoff shape is a multiple of
/// it, so a zero delay would call a failing node again and again in a busy
/// loop (SPEC 2.5). [`RetryPolicy::validate`] refuses it like the other
/// bad values, and so does every place a policy is set (the director
/// builder, node options, the event bus, the C and Python APIs).
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Shape of the delays (default exponential).
    pub backoff: Backoff,
    /// Delay before the first retry (default 100 ms); above zero.
    pub initial_delay: Duration,
    /// Factor applied to the delay after each failure (default 2.0, >= 1).
    pub multiplier: f64,
    /// Upper bound of the delay (default 5 s).
    pub max_delay: Duration,
    /// Relative random spread of each delay, 0.0 to 1.0 (default 0.1). A
    /// jittered delay is never below 1 ms (or the unjittered delay, when
    /// that is shorter), so even 1.0 never retries at once.
    pub jitter: f64,
    /// Re-attempts before the batch goes to the dead-letter hook;
    /// `None` (the default) retries forever.
    pub max_retries: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            backoff: Backoff::Exponential,
            initial_delay: Duration::from_millis(100),
            multiplier: 2.0,
            max_delay: Duration::from_secs(5),
            jitter: 0.1,
            max_retries: None,
        }
    }
}

impl RetryPolicy {
    /// Checks the policy: `initial_delay` above zero, jitter in 0..=1, and
    /// what the shape uses: the multiplier finite and at least 1
    /// (exponential), `max_delay >= initial_delay` (linear, exponential);
    /// constant backoff ignores both. The
    /// director refuses a policy that fails.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |why: &str| Err(crate::Error::InvalidArgument(why.to_owned()));
        if self.initial_delay.is_zero() {
            return bad("retry initial_delay must be above zero (a zero delay retries in a busy loop)");
        }
        // What a shape ignores is not checked: the multiplier matters to
        // exponential backoff only, the cap to all but constant.
        if self.backoff == Backoff::Exponential && !(self.multiplier.is_finite() && self.multiplier >= 1.0) {
            return bad("retry multiplier must be a finite number >= 1.0");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return bad("retry jitter must be between 0.0 and 1.0");
        }
        if self.backoff != Backoff::Constant && self.max_delay < self.initial_delay {
            return bad("retry max_delay must not be smaller than initial_delay");
        }
        Ok(())
    }

    /// The delay before re-attempt number `level` (0-based), with `unit`
    /// in `[0, 1)` supplying the jitter. Never below [`MIN_DELAY`] (or the
    /// unjittered delay, when that is shorter), so never zero.
    pub(crate) fn delay(&self, level: u32, unit: f64) -> Duration {
        let initial = self.initial_delay.as_secs_f64();
        let base = match self.backoff {
            Backoff::Constant => initial,
            Backoff::Linear => initial * (f64::from(level) + 1.0),
            // `powf`, not `powi` of a clamped level: a gentle multiplier
            // (1.001) is still below the cap after 1,024 re-attempts, and
            // the clamp froze the delay there. An overflow to infinity is
            // capped below.
            Backoff::Exponential => initial * self.multiplier.powf(f64::from(level)),
        };
        let capped = match self.backoff {
            Backoff::Constant => base,
            _ => base.min(self.max_delay.as_secs_f64()),
        };
        let spread = 1.0 + self.jitter * (2.0 * unit - 1.0);
        // With `jitter` 1 the spread reaches 0: without a floor the retry
        // would come at once, not on a timer (SPEC 2.5).
        let floor = capped.min(MIN_DELAY.as_secs_f64());
        // A policy may say "forever" (`Duration::MAX`); jitter can exceed it.
        Duration::try_from_secs_f64((capped * spread).max(floor)).unwrap_or(Duration::MAX)
    }
}

/// The shortest delay jitter may bring a retry down to (unless the
/// unjittered delay is shorter still; then that delay is the floor).
const MIN_DELAY: Duration = Duration::from_millis(1);

/// A small xorshift generator for jitter; no cryptographic use.
#[derive(Debug, Clone)]
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    /// A seed for a node's jitter, different in every process and for
    /// every registration. Seeded from the uid and a per-process counter,
    /// every process with a node of that uid retried on the same schedule,
    /// so a fleet whose endpoint went down came back to it in lock-step:
    /// the herd that jitter is there to spread. `RandomState` is keyed from
    /// the OS's randomness once per thread and steps on every `new`.
    pub(crate) fn seed_for(uid: &str) -> u64 {
        use std::hash::BuildHasher;
        std::collections::hash_map::RandomState::new().hash_one(uid)
    }
    pub(crate) fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_then_caps() {
        let p = RetryPolicy { jitter: 0.0, ..RetryPolicy::default() };
        assert_eq!(p.delay(0, 0.5), Duration::from_millis(100));
        assert_eq!(p.delay(1, 0.5), Duration::from_millis(200));
        assert_eq!(p.delay(3, 0.5), Duration::from_millis(800));
        assert_eq!(p.delay(30, 0.5), Duration::from_secs(5));
    }

    /// The delay kept growing to the cap however gentle the multiplier: it
    /// used to stop at re-attempt 1,024 (1.001^1024 is 2.78, so 100 ms
    /// stayed at 278 ms under a 5 s cap), and a huge level still caps.
    #[test]
    fn a_gentle_multiplier_reaches_the_cap() {
        let p = RetryPolicy { multiplier: 1.001, jitter: 0.0, ..RetryPolicy::default() };
        let at = |level| p.delay(level, 0.5).as_secs_f64();
        assert!((at(1024) - 0.1 * 1.001f64.powi(1024)).abs() < 1e-9);
        assert!(at(2000) > at(1024) * 2.6, "{} {}", at(2000), at(1024));
        assert_eq!(p.delay(4000, 0.5), Duration::from_secs(5));
        assert_eq!(p.delay(u32::MAX, 0.5), Duration::from_secs(5));
    }

    #[test]
    fn constant_and_linear_shapes() {
        let ms = Duration::from_millis;
        let constant = RetryPolicy { backoff: Backoff::Constant, jitter: 0.0, ..RetryPolicy::default() };
        assert_eq!([constant.delay(0, 0.5), constant.delay(7, 0.5)], [ms(100), ms(100)]);
        let linear = RetryPolicy { backoff: Backoff::Linear, jitter: 0.0, ..RetryPolicy::default() };
        assert_eq!(
            [linear.delay(0, 0.5), linear.delay(1, 0.5), linear.delay(4, 0.5)],
            [ms(100), ms(200), ms(500)]
        );
        assert_eq!(linear.delay(1000, 0.5), Duration::from_secs(5));
    }

    /// Two registrations of one uid (here, in one process; across
    /// processes the keys differ too) draw different jitter.
    #[test]
    fn the_same_uid_gets_its_own_jitter() {
        let a = Jitter::new(Jitter::seed_for("billing-webhook")).unit();
        let b = Jitter::new(Jitter::seed_for("billing-webhook")).unit();
        assert_ne!(a, b);
    }

    #[test]
    fn jitter_stays_in_band() {
        let p = RetryPolicy::default();
        let mut j = Jitter::new(42);
        for _ in 0..1000 {
            let d = p.delay(0, j.unit()).as_secs_f64();
            assert!((0.09..=0.11).contains(&d), "{d}");
        }
    }

    /// With the widest jitter, a unit of 0 used to give a spread of 0: a
    /// zero delay, an immediate retry where SPEC 2.5 asks for a timer.
    #[test]
    fn full_jitter_never_retries_at_once() {
        let ms = Duration::from_millis;
        for backoff in [Backoff::Constant, Backoff::Linear, Backoff::Exponential] {
            let p = RetryPolicy { backoff, jitter: 1.0, ..RetryPolicy::default() };
            for level in [0, 1, 5, 40] {
                assert_eq!(p.delay(level, 0.0), MIN_DELAY, "{backoff:?} level {level}");
            }
            // The floor bends only the bottom of the band.
            assert_eq!(p.delay(0, 0.25), ms(50));
            assert_eq!(p.delay(0, 0.75), ms(150));
        }
        // A policy quicker than the floor is held at its own delay instead.
        let quick = RetryPolicy {
            initial_delay: Duration::from_micros(200),
            max_delay: Duration::from_micros(200),
            jitter: 1.0,
            ..RetryPolicy::default()
        };
        assert_eq!(quick.delay(0, 0.0), Duration::from_micros(200));
        assert_eq!(quick.delay(0, 0.75), Duration::from_micros(300));
        let mut j = Jitter::new(7);
        for _ in 0..1000 {
            assert!(quick.delay(0, j.unit()) >= Duration::from_micros(200));
        }
    }

    #[test]
    fn bad_policies_are_refused() {
        for p in [
            RetryPolicy { multiplier: 0.5, ..Default::default() },
            RetryPolicy { multiplier: f64::NAN, ..Default::default() },
            RetryPolicy { jitter: 1.5, ..Default::default() },
            RetryPolicy { max_delay: Duration::from_millis(1), ..Default::default() },
            RetryPolicy { initial_delay: Duration::ZERO, max_delay: Duration::ZERO, ..Default::default() },
            RetryPolicy { initial_delay: Duration::ZERO, ..Default::default() },
        ] {
            assert!(p.validate().is_err(), "{p:?}");
        }
    }

    /// What a shape does not use is not checked (the C, Python and Rust
    /// bus options all agree on this): the multiplier outside exponential
    /// backoff, the cap under constant backoff, which then waits `initial`
    /// however small the cap.
    #[test]
    fn what_a_shape_ignores_is_not_checked() {
        let ms = Duration::from_millis;
        let ignored = |backoff| RetryPolicy { backoff, multiplier: 0.0, jitter: 0.0, ..Default::default() };
        assert_eq!(ignored(Backoff::Linear).validate(), Ok(()));
        let constant = RetryPolicy { max_delay: ms(1), ..ignored(Backoff::Constant) };
        assert_eq!(constant.validate(), Ok(()));
        assert_eq!(constant.delay(3, 0.5), ms(100), "initial, not the cap");
        assert!(ignored(Backoff::Exponential).validate().is_err());
        let capped = RetryPolicy { max_delay: ms(1), ..ignored(Backoff::Linear) };
        assert!(capped.validate().is_err(), "linear's cap below initial");
    }
}
