//! A circuit breaker per agency: after `threshold` failed calls in a row no call is made
//! to that agency until `cooldown` has passed; then one trial call decides whether it
//! closes again. It keeps a dead agency from costing every delivery a full timeout, and
//! it only ever concerns that one agency.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Make the call.
    Closed,
    /// Do not call; the agency is resting.
    Open,
}

#[derive(Debug)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is under way since then; others wait for its verdict, or for it
    /// to expire (a trial whose task was dropped never reports).
    Trial {
        since: Instant,
    },
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    /// How long a trial may go unreported before another is allowed.
    trial_expiry: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration, trial_expiry: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            trial_expiry,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    pub fn gate(&self) -> Gate {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *s {
            State::Closed { .. } => Gate::Closed,
            State::Open { until } if Instant::now() >= until => {
                *s = State::Trial {
                    since: Instant::now(),
                };
                Gate::Closed
            }
            State::Trial { since } if since.elapsed() >= self.trial_expiry => {
                *s = State::Trial {
                    since: Instant::now(),
                };
                Gate::Closed
            }
            State::Open { .. } | State::Trial { .. } => Gate::Open,
        }
    }

    pub fn success(&self) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = State::Closed { failures: 0 };
    }

    /// Records a failed call; true when this failure opened the circuit.
    pub fn failure(&self) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let open = State::Open {
            until: Instant::now() + self.cooldown,
        };
        match *s {
            State::Closed { failures } if failures + 1 >= self.threshold => {
                *s = open;
                true
            }
            State::Closed { failures } => {
                *s = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::Trial { .. } => {
                *s = open;
                true
            }
            State::Open { .. } => false,
        }
    }

    /// How long until a trial call may go (zero when closed or when one may go now).
    pub fn reopens_in(&self) -> Duration {
        match *self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Closed { .. } => Duration::ZERO,
            State::Open { until } => until.saturating_duration_since(Instant::now()),
            State::Trial { since } => self.trial_expiry.saturating_sub(since.elapsed()),
        }
    }

    /// For `himaya_agency_breaker_state`: 0 closed, 1 half-open (a trial call under
    /// way), 2 open.
    pub fn state_code(&self) -> i64 {
        match *self.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Closed { .. } => 0,
            State::Trial { .. } => 1,
            State::Open { .. } => 2,
        }
    }

    pub fn is_open(&self) -> bool {
        !matches!(
            *self.state.lock().unwrap_or_else(|p| p.into_inner()),
            State::Closed { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_then_one_trial_decides() {
        let b = Breaker::new(3, Duration::from_millis(30), Duration::from_secs(60));
        assert!(!b.failure());
        assert!(!b.failure());
        assert_eq!(b.gate(), Gate::Closed);
        assert!(b.failure(), "the third failure opens it");
        assert_eq!(b.gate(), Gate::Open);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.gate(), Gate::Closed, "one trial after the cooldown");
        assert_eq!(b.gate(), Gate::Open, "only one trial at a time");
        assert!(b.failure(), "a failed trial opens it again");
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(b.gate(), Gate::Closed);
        b.success();
        assert!(!b.is_open());
        assert_eq!(b.gate(), Gate::Closed);
    }

    #[test]
    fn a_trial_that_never_reports_expires() {
        let b = Breaker::new(1, Duration::from_millis(10), Duration::from_millis(30));
        assert!(b.failure());
        std::thread::sleep(Duration::from_millis(15));
        assert_eq!(b.gate(), Gate::Closed, "the trial");
        // Its task is dropped: no success, no failure.
        assert_eq!(b.gate(), Gate::Open);
        assert!(b.reopens_in() > Duration::ZERO);
        std::thread::sleep(Duration::from_millis(35));
        assert_eq!(
            b.gate(),
            Gate::Closed,
            "another trial once the first expired"
        );
    }

    #[test]
    fn a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(60), Duration::from_secs(60));
        assert!(!b.failure());
        b.success();
        assert!(!b.failure());
        assert_eq!(b.gate(), Gate::Closed);
    }
}
