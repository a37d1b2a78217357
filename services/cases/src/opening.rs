//! Intake's writes, grouped: every referral accepted while the previous group was being
//! written is stored in one transaction (a group commit), and each caller answered with
//! its own case once that transaction commits.
//!
//! One referral alone is written as soon as it arrives: a writer never waits for a group
//! to fill, it takes what is already waiting (up to [`GROUP`]). Under load the commit,
//! its flush to disk and the round trips of a transaction are paid once per group
//! instead of once per referral. A group that fails as a whole (a constraint, a lost
//! connection) is written again one referral at a time, so each caller gets the answer
//! its own referral deserves and no referral is held back by another's.
//!
//! Nothing is answered before its transaction commits, and a caller that went away
//! meanwhile changes nothing: the case is stored, and the same submission sent again is
//! answered from the stored one (`replayed`).

use std::sync::Arc;

use himaya_record::CaseRecord;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use himaya_proto::v1::MappedService;

use himaya_store::handover::{Handed, Handover};

use crate::db::{open_case, open_cases, NewCase, Submitted};
use crate::CasesError;

/// A stored referral's answer: its case, and the services proposed for it.
pub(crate) type Opened = (Submitted, Vec<MappedService>);

/// Referrals written in one transaction, at most: the gateway lets 64 routine intake
/// calls in at once, so a group is never cut while callers wait.
pub const GROUP: usize = 64;

/// One referral waiting for its group.
struct Job {
    case: NewCase,
    reply: oneshot::Sender<Result<Opened, CasesError>>,
}

/// The door to a lane's writers (routine or urgent, each with its own connections).
#[derive(Clone)]
pub(crate) struct Opening {
    jobs: mpsc::Sender<Job>,
}

impl Opening {
    /// `writers` tasks writing groups through `pool` until `shutdown`: while one commits,
    /// the next group gathers and is written by another.
    /// The writers run on the urgent runtime of `urgent` (for the urgent lane: see
    /// `himaya_bus::urgent`), or beside the caller; their pool's connections are opened,
    /// and so driven, there. With a `handover`, the writers publish their urgent events
    /// themselves as soon as each group has committed, while its callers are answered
    /// (`himaya_store::handover`), instead of leaving them to the relay.
    pub(crate) fn start(
        pool: PgPool,
        writers: usize,
        shutdown: CancellationToken,
        urgent: Option<&himaya_bus::urgent::Urgent>,
        handover: Option<Handover>,
    ) -> (Opening, Vec<JoinHandle<()>>) {
        // Bounded: the gateway's admission already bounds what can wait here.
        let (jobs, queue) = mpsc::channel(GROUP * writers.max(1) * 2);
        let queue = Arc::new(Mutex::new(queue));
        let tasks = (0..writers.max(1))
            .map(|_| {
                himaya_bus::urgent::spawn(
                    urgent,
                    write(
                        pool.clone(),
                        queue.clone(),
                        handover.clone(),
                        shutdown.clone(),
                    ),
                )
            })
            .collect();
        (Opening { jobs }, tasks)
    }

    /// Stores `case` (or finds it stored, for a submission seen before) and answers once
    /// its transaction has committed, with the services the map proposes for it.
    pub(crate) async fn open(&self, case: NewCase) -> Result<Opened, CasesError> {
        let (reply, answer) = oneshot::channel();
        if self.jobs.send(Job { case, reply }).await.is_err() {
            return Err(stopped());
        }
        answer.await.unwrap_or_else(|_| Err(stopped()))
    }
}

/// The writers are gone (the service is stopping): the caller may send again.
fn stopped() -> CasesError {
    CasesError::Store(himaya_store::StoreError::Database(sqlx::Error::PoolClosed))
}

/// One writer: waits for a referral, takes whatever else already waits, writes them.
async fn write(
    pool: PgPool,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    handover: Option<Handover>,
    shutdown: CancellationToken,
) {
    loop {
        let group = {
            let mut queue = queue.lock().await;
            let first = tokio::select! {
                _ = shutdown.cancelled() => return,
                job = queue.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
            };
            let mut group = vec![first];
            while group.len() < GROUP {
                match queue.try_recv() {
                    Ok(job) => group.push(job),
                    Err(_) => break,
                }
            }
            group
        };
        write_group(&pool, group, handover.as_ref()).await;
    }
}

/// Writes a group and answers each of its callers. A caller gone before the commit (its
/// deadline passed) takes the group's transaction back with it, as a lone call's would;
/// the others are written again without it. Then publishes what the `handover` holds.
async fn write_group(pool: &PgPool, mut group: Vec<Job>, handover: Option<&Handover>) {
    loop {
        group.retain(|j| !j.reply.is_closed());
        if group.is_empty() {
            return;
        }
        let cases: Vec<&NewCase> = group.iter().map(|j| &j.case).collect();
        let records: Vec<&CaseRecord> = cases.iter().map(|c| &c.record).collect();
        let wanted = || group.iter().all(|j| !j.reply.is_closed());
        // The proposals follow from the referrals alone, so they are read (on another
        // connection) while the group is written: one round trip less to wait for.
        let (written, proposed) = tokio::join!(
            open_cases(pool, &cases, &wanted, handover),
            proposals(pool, &records)
        );
        match written {
            Ok(None) => continue,
            Ok(Some((answers, handed))) => {
                for ((job, answer), proposed) in group.into_iter().zip(answers).zip(proposed) {
                    // Gone since the commit: its case is stored all the same.
                    let _ = job.reply.send(Ok((answer, proposed)));
                }
                // Then the events go out (the callers have their answers already).
                publish(handover, pool, handed).await;
                return;
            }
            Err(e) if group.len() == 1 => {
                if let Some(job) = group.pop() {
                    let _ = job.reply.send(Err(e));
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, referrals = group.len(), "a group of referrals failed together; writing each alone");
                for job in group {
                    let wanted = || !job.reply.is_closed();
                    match open_case(pool, &job.case, &wanted, handover).await {
                        Ok(Some((answer, handed))) => {
                            let answering = async {
                                let proposed = proposals(pool, &[&job.case.record]).await;
                                let proposed = proposed.into_iter().next().unwrap_or_default();
                                let _ = job.reply.send(Ok((answer, proposed)));
                            };
                            tokio::join!(answering, publish(handover, pool, handed));
                        }
                        // Its caller is gone: nothing kept, no one to answer.
                        Ok(None) => {}
                        Err(e) => {
                            let _ = job.reply.send(Err(e));
                        }
                    }
                }
                return;
            }
        }
    }
}

/// Publishes what a committed group's writer holds (nothing without a handover).
async fn publish(handover: Option<&Handover>, pool: &PgPool, handed: Handed) {
    if let Some(h) = handover {
        h.publish(pool, handed).await;
    }
}

/// The services proposed for each of `records`, read once the referrals are stored. A
/// proposal only: a map that cannot be read leaves them without, and fails no referral.
async fn proposals(pool: &PgPool, records: &[&CaseRecord]) -> Vec<Vec<MappedService>> {
    crate::service_map::propose_all(pool, records)
        .await
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, referrals = records.len(), "no service proposals: the service map could not be read");
            vec![Vec::new(); records.len()]
        })
}
