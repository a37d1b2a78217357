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
    /// One trial call is under way; others wait for its verdict.
    Trial,
}

#[derive(Debug)]
pub struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Breaker {
        Breaker {
            threshold: threshold.max(1),
            cooldown,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    pub fn gate(&self) -> Gate {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *s {
            State::Closed { .. } => Gate::Closed,
            State::Open { until } if Instant::now() >= until => {
                *s = State::Trial;
                Gate::Closed
            }
            State::Open { .. } | State::Trial => Gate::Open,
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
            State::Trial => {
                *s = open;
                true
            }
            State::Open { .. } => false,
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
        let b = Breaker::new(3, Duration::from_millis(30));
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
    fn a_success_resets_the_count() {
        let b = Breaker::new(2, Duration::from_secs(60));
        assert!(!b.failure());
        b.success();
        assert!(!b.failure());
        assert_eq!(b.gate(), Gate::Closed);
    }
}
