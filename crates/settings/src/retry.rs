//! The hub's one retry policy, for everything that waits before trying again: the bus's
//! reconnects and in-process retries, the outbox relay after a failed round, and the
//! calls to an agency. Steps double from a first step up to a cap; each wait is drawn
//! between half its step and the step, so that processes losing the broker or an agency
//! together do not come back in step.

use std::time::Duration;

pub use backon::{BackoffBuilder, ExponentialBuilder};

/// Waits whose nominal step starts at `first` and doubles up to `cap` (a `first` above
/// the cap starts at the cap); each wait lies between half its step and the step. No
/// limit on the number of waits: a bounded retry adds `with_max_times`.
pub fn backoff(first: Duration, cap: Duration) -> ExponentialBuilder {
    let first = first.min(cap);
    // backon draws each wait in [d, 2d) around its delay d: half the step, up to the step.
    ExponentialBuilder::new()
        .with_factor(2.0)
        .with_min_delay(first / 2)
        .with_max_delay(cap / 2)
        .with_jitter()
        .without_max_times()
}

/// The longest step of a call to an agency, however many attempts and however long the
/// configured first step.
const CALL_CAP: Duration = Duration::from_secs(30);

/// The first step's doublings a call to an agency goes through at most (64 × the first
/// step, under [`CALL_CAP`]).
const CALL_DOUBLINGS: u32 = 6;

impl crate::ConnectorSettings {
    /// The waits between the calls of one delivery: `attempts` calls in all, so one wait
    /// fewer, from `backoff_ms` doubling up to 64 × `backoff_ms`, and never above 30 s.
    pub fn retry(&self) -> ExponentialBuilder {
        let first = Duration::from_millis(self.backoff_ms);
        let cap = first.saturating_mul(1 << CALL_DOUBLINGS).min(CALL_CAP);
        let waits = self.attempts.max(1) - 1;
        backoff(first, cap).with_max_times(usize::try_from(waits).unwrap_or(usize::MAX))
    }
}

/// Whether `wait` is one the policy may draw for a step of `step`: between half the step
/// and the step (backon computes in f32 seconds, so a microsecond of slack either side).
/// What the tests of every user of the policy check their waits against.
pub fn jittered_within(wait: Duration, step: Duration) -> bool {
    let slack = Duration::from_micros(1);
    wait + slack >= step / 2 && wait <= step + slack
}

#[cfg(test)]
mod tests {
    use super::*;

    fn within(wait: Duration, step_ms: u64) -> bool {
        jittered_within(wait, Duration::from_millis(step_ms))
    }

    #[test]
    fn steps_double_up_to_the_cap_each_wait_between_half_the_step_and_the_step() {
        for _ in 0..50 {
            let waits: Vec<Duration> = backoff(Duration::from_millis(400), Duration::from_secs(5))
                .build()
                .take(8)
                .collect();
            let steps = [400, 800, 1600, 3200, 5000, 5000, 5000, 5000];
            assert_eq!(waits.len(), steps.len());
            for (w, s) in waits.iter().zip(steps) {
                assert!(within(*w, s), "{w:?} for a step of {s} ms");
            }
        }
    }

    #[test]
    fn the_waits_are_spread_out_and_a_zero_step_stays_zero() {
        let firsts: std::collections::BTreeSet<u128> = (0..200)
            .map(|_| {
                backoff(Duration::from_millis(400), Duration::from_secs(5))
                    .build()
                    .next()
                    .unwrap_or_default()
                    .as_millis()
            })
            .collect();
        assert!(firsts.len() > 50, "{} distinct waits", firsts.len());
        assert!(
            firsts.iter().all(|ms| (200..=400).contains(ms)),
            "{firsts:?}"
        );
        let zero: Vec<Duration> = backoff(Duration::ZERO, Duration::from_secs(5))
            .build()
            .take(3)
            .collect();
        assert_eq!(zero, [Duration::ZERO; 3]);
    }

    #[test]
    fn a_first_step_above_the_cap_starts_at_the_cap() {
        let first = backoff(Duration::from_secs(60), Duration::from_secs(10))
            .build()
            .next()
            .unwrap_or_default();
        assert!(within(first, 10_000), "{first:?}");
    }

    fn connectors(attempts: u32, backoff_ms: u64) -> crate::ConnectorSettings {
        crate::ConnectorSettings {
            timeout_ms: 1000,
            attempts,
            backoff_ms,
            breaker_failures: 5,
            breaker_cooldown_ms: 1000,
            max_body_bytes: 1024,
            batch: 64,
            webhook_listen: None,
            hub_url: None,
            client_certs_dir: Default::default(),
        }
    }

    #[test]
    fn a_delivery_waits_one_time_fewer_than_its_attempts() {
        assert_eq!(connectors(3, 200).retry().build().count(), 2);
        assert_eq!(connectors(1, 200).retry().build().count(), 0);
        // Zero attempts is read as one: the call is made once.
        assert_eq!(connectors(0, 200).retry().build().count(), 0);
    }

    #[test]
    fn a_delivery_s_steps_grow_from_the_first_and_are_capped() {
        // 100 ms: 100, 200, 400, ... up to 6.4 s (64 × the first step).
        let waits: Vec<Duration> = connectors(10, 100).retry().build().collect();
        let steps = [100, 200, 400, 800, 1600, 3200, 6400, 6400, 6400];
        assert_eq!(waits.len(), steps.len());
        for (w, s) in waits.iter().zip(steps) {
            assert!(within(*w, s), "{w:?} for a step of {s} ms");
        }
        // A long first step: never above 30 s.
        let long: Vec<Duration> = connectors(40, 10_000).retry().build().collect();
        assert!(long.iter().all(|w| *w <= CALL_CAP), "{long:?}");
        assert!(within(long[long.len() - 1], 30_000));
    }
}
