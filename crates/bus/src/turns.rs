//! Turns for a process's routine background transactions (see [`crate::Bus::set_background`]).
//!
//! A few at a time run, so that the statements of intake and of the urgent lanes find a
//! core. Two kinds of work take them: the stages on a referral's way to its agency (the
//! claims of the cases service's, the router's, the directory's and the disclosure
//! log's relays, the router's batches) and the stages that record what has already
//! happened (the agencies' routine answers on the cases, the disclosure log, and the
//! connectors' relay of those answers). A recording stage takes a turn only when no
//! stage on the way is waiting for one: its batch then grows and costs less per message,
//! while what an agency waits for goes first. Nothing is starved for long: a wait ends
//! after [`TURN_WAIT`] and the transaction runs without a turn; the recording consumers'
//! queues are counted by the backlog watch, which refuses routine intake when they fall
//! behind, and the connectors' outbox shows in `himaya_outbox_oldest_age_seconds`.
//! Urgent answers (an urgent referral refused or parked) never wait: they take the
//! urgent relay and lane, which take no turns.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{Mutex, Notify, OwnedSemaphorePermit, Semaphore};

/// The longest a routine background transaction waits for its turn before it runs
/// without one: the turns order the work, they must not stop it. A turn held by a
/// transaction stuck on a lock (an operator's `LOCK TABLE`, a migration) would
/// otherwise hold every other stage of the process back for as long.
pub const TURN_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Which kind of stage asks for a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// On a referral's way to its agency: first.
    OnTheWay,
    /// Recording what has already happened: after every stage on the way.
    Record,
}

/// A process's background turns.
#[derive(Debug)]
pub struct Turns {
    turns: Arc<Semaphore>,
    /// How many stages on the way are waiting for a turn now.
    waiting: AtomicUsize,
    /// Held by the one recording stage that may wait in the turns' queue at a time, so
    /// that a stage on the way waits behind at most one of them.
    recorder: Mutex<()>,
    /// Told whenever a stage on the way stops waiting.
    done: Notify,
}

/// A turn, given back when dropped.
#[derive(Debug)]
pub struct Turn {
    _turn: OwnedSemaphorePermit,
}

impl Turns {
    /// `n` turns (at least one).
    pub fn new(n: usize) -> Turns {
        Turns {
            turns: Arc::new(Semaphore::new(n.max(1))),
            waiting: AtomicUsize::new(0),
            recorder: Mutex::new(()),
            done: Notify::new(),
        }
    }

    /// Waits for a turn for `stage`, at most [`TURN_WAIT`]; `None` when the wait is over
    /// (the transaction runs all the same) or the turns are closed.
    pub async fn take(&self, stage: Stage) -> Option<Turn> {
        tokio::time::timeout(TURN_WAIT, self.wait(stage))
            .await
            .unwrap_or_default()
    }

    async fn wait(&self, stage: Stage) -> Option<Turn> {
        if stage == Stage::OnTheWay {
            self.waiting.fetch_add(1, Ordering::AcqRel);
            // Counted down however the wait ends (a timeout drops this future), and the
            // recorder waiting for it told.
            let _counted = Waiting(self);
            let turn = self.turns.clone().acquire_owned().await.ok()?;
            return Some(Turn { _turn: turn });
        }
        let _only_one = self.recorder.lock().await;
        loop {
            // First until no stage on the way waits: it is counted down when its task
            // next runs, which may be after its turn was handed to it.
            loop {
                let done = self.done.notified();
                if self.waiting.load(Ordering::Acquire) == 0 {
                    break;
                }
                done.await;
            }
            let turn = self.turns.clone().acquire_owned().await.ok()?;
            if self.waiting.load(Ordering::Acquire) == 0 {
                return Some(Turn { _turn: turn });
            }
            // A stage on the way came while this one waited, and waits behind it: the
            // turn goes to it, and this stage asks again once it has it.
            drop(turn);
        }
    }
}

/// Counts a stage on the way down when its wait ends, and tells the recorder.
struct Waiting<'a>(&'a Turns);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.done.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::{Stage, Turns};
    use std::sync::Arc;
    use std::time::Duration;

    /// With the one turn held, a recording stage asks first and a stage on the way
    /// second: the turn goes to the stage on the way when it is given back.
    #[tokio::test]
    async fn a_stage_on_the_way_goes_before_a_recording_one() {
        let turns = Arc::new(Turns::new(1));
        let held = turns.take(Stage::OnTheWay).await;
        assert!(held.is_some());
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = asks(&turns, &order, Stage::Record, "record");
        tokio::time::sleep(Duration::from_millis(20)).await;
        let on_the_way = asks(&turns, &order, Stage::OnTheWay, "on the way");
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        on_the_way.await.unwrap();
        record.await.unwrap();
        assert_eq!(
            *order.lock().unwrap(),
            vec![("on the way", true), ("record", true)]
        );
    }

    type Order = Arc<std::sync::Mutex<Vec<(&'static str, bool)>>>;

    /// A task asking for a turn as `stage`, noting `label` in `order` when it has one
    /// (or has waited in vain), and holding it 10 ms.
    fn asks(
        turns: &Arc<Turns>,
        order: &Order,
        stage: Stage,
        label: &'static str,
    ) -> tokio::task::JoinHandle<()> {
        let (turns, order) = (turns.clone(), order.clone());
        tokio::spawn(async move {
            let turn = turns.take(stage).await;
            order.lock().unwrap().push((label, turn.is_some()));
            tokio::time::sleep(Duration::from_millis(10)).await;
        })
    }

    /// A stage on the way whose wait ended without a turn (it waited a second) is no
    /// longer counted: a recording stage then gets the turn at once.
    #[tokio::test]
    async fn a_wait_given_up_is_not_counted() {
        let turns = Turns::new(1);
        let held = turns.take(Stage::OnTheWay).await;
        assert!(held.is_some());
        assert!(
            turns.take(Stage::OnTheWay).await.is_none(),
            "it waited a second"
        );
        drop(held);
        let started = std::time::Instant::now();
        assert!(turns.take(Stage::Record).await.is_some());
        assert!(started.elapsed() < Duration::from_millis(500));
    }
}
