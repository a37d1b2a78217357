//! Urgent rows published by the writer that committed them, at once.
//!
//! Through the relay, an urgent row waits after its commit for the notification to reach
//! the relay's listener and for the urgent relay's claim (a statement on a PostgreSQL the
//! routine flood keeps busy) before it is published: measured at the two outboxes an
//! escalation crosses, that was most of what is left of its time in the hub under load.
//! A writer with a [`Handover`] writes its urgent rows already leased under its own name
//! for [`LEASE`], so no relay takes them meanwhile, and publishes them itself as soon as
//! its transaction has committed ([`Handover::publish`]); then marks them sent, as a
//! relay would.
//!
//! Nothing is given up for it. A row is still committed with its effect and marked sent
//! only after the broker's confirm. Whatever the writer cannot publish (the broker
//! unreachable or refusing, no confirm within [`LEASE`]) it gives back to the relays at
//! once and wakes the urgent relay, which publishes it as any other row; a writer that
//! dies between its commit and its publish leaves leases that end after [`LEASE`], and a
//! relay then publishes those rows (the relays poll for ended leases). A row published
//! twice that way is dropped by its consumer's inbox, as after a relay's crash.

use std::sync::Arc;
use std::time::Duration;

use himaya_bus::{Bus, Outgoing};
use sqlx::{PgConnection, PgPool};

use crate::outbox::Rows;
use crate::relay::{publish_rows, Published, URGENT_PAYLOAD};
use crate::StoreError;

/// How long a writer holds the urgent rows it wrote: the longest it waits for their
/// confirms, and the longest such a row waits for a relay should the writer die.
pub const LEASE: Duration = Duration::from_secs(5);

/// A writer's right to publish its own urgent rows; one per writer or per service,
/// named uniquely as relays are.
#[derive(Clone)]
pub struct Handover {
    holder: String,
    bus: Arc<Bus>,
    /// Its outbox's metrics, where the relay counts too: a writer's publishes are
    /// that outbox's publishes.
    metrics: himaya_metrics::OutboxHandles,
}

/// The urgent rows of one transaction, held for their writer to publish once it has
/// committed.
#[derive(Debug, Default)]
#[must_use = "rows held and not published wait for their lease to end"]
pub struct Handed {
    ids: Vec<i64>,
    msgs: Vec<Outgoing>,
}

impl Handed {
    /// The rows a statement held for its writer, with their messages.
    pub fn of(held: Vec<(i64, &Outgoing)>) -> Handed {
        let (ids, msgs) = held.into_iter().map(|(id, m)| (id, m.clone())).unzip();
        Handed { ids, msgs }
    }

    /// Whether it holds no row.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

impl Handover {
    /// Publishes through `bus`; on the urgent runtime, through its urgent connection
    /// (see `himaya_bus::urgent`). Writes to the outbox of `schema`, and counts its
    /// publishes in that outbox's metrics.
    pub fn new(bus: Arc<Bus>, schema: &str) -> Handover {
        let random = uuid::Uuid::new_v4().simple().to_string();
        Handover {
            holder: format!("writer-{}-{}", std::process::id(), &random[..12]),
            metrics: bus.metrics().outbox.of(schema),
            bus,
        }
    }

    /// Adds `msgs` to the outbox in one statement, in their order, with the urgent rows
    /// held for this writer: publish them with [`Handover::publish`] once the
    /// transaction has committed (should it roll back, there is nothing to publish).
    pub async fn enqueue_all(
        &self,
        conn: &mut PgConnection,
        msgs: &[Outgoing],
    ) -> Result<Handed, StoreError> {
        Ok(Handed::of(self.rows(msgs)?.insert(conn).await?))
    }

    /// The outbox rows of `msgs` with the urgent ones held for this writer, for a
    /// statement of the caller's that writes more (see [`crate::outbox::Rows`]); what
    /// the rows' [`Rows::held`] says of the statement's answer goes to [`Handed::of`].
    pub fn rows<'a>(&'a self, msgs: &'a [Outgoing]) -> Result<Rows<'a>, StoreError> {
        Rows::new(msgs, Some((&self.holder, LEASE)))
    }

    /// Publishes rows this writer committed and waits for their confirms, then marks
    /// the confirmed ones sent and gives the others back to the relays (waking the
    /// urgent relay). Failures are the relays' to retry: nothing is returned.
    pub async fn publish(&self, pool: &PgPool, handed: Handed) {
        if handed.is_empty() {
            return;
        }
        let bus = match (himaya_bus::urgent::is_current(), self.bus.urgent()) {
            (true, Some(u)) => u.bus(),
            _ => &self.bus,
        };
        let mut sent = Vec::with_capacity(handed.ids.len());
        let mut freed = Vec::new();
        match publish_rows(bus, &handed.msgs, LEASE, Some(&self.metrics)).await {
            Published::Answered(results) => {
                for (id, result) in handed.ids.iter().zip(results) {
                    match result {
                        Ok(()) => sent.push(*id),
                        Err(e) => {
                            tracing::warn!(error = %e, "urgent outbox row not confirmed; the relay sends it");
                            freed.push(*id);
                        }
                    }
                }
            }
            Published::Unreachable(e) => {
                tracing::warn!(error = %e, rows = handed.ids.len(), "urgent outbox rows not published; the relay sends them");
                freed = handed.ids;
            }
            // Perhaps published, perhaps not: sent again by a relay, the inbox drops
            // what was a duplicate.
            Published::Unanswered => {
                tracing::warn!(
                    rows = handed.ids.len(),
                    secs = LEASE.as_secs(),
                    "urgent outbox rows not confirmed in time; the relay sends them"
                );
                freed = handed.ids;
            }
        }
        // Confirmed rows are sent whoever holds them now; only this writer's own leases
        // are given back.
        let recorded = sqlx::query(
            "WITH sent AS (
               UPDATE outbox SET sent_at = now(), lease_until = NULL
                WHERE id = ANY($1) AND coalesce(sent_at, '-infinity') = '-infinity'
             ), freed AS (
               UPDATE outbox SET lease_until = NULL
                WHERE id = ANY($2) AND leased_by = $3 AND sent_at IS NULL
               RETURNING 1
             )
             SELECT pg_notify('himaya_outbox_' || current_schema(), $4)
               FROM (SELECT 1 FROM freed LIMIT 1) AS any_freed",
        )
        .bind(&sent)
        .bind(&freed)
        .bind(&self.holder)
        .bind(URGENT_PAYLOAD)
        .execute(pool)
        .await;
        if let Err(e) = recorded {
            // The leases end, and a relay publishes the rows again (the inbox drops
            // the duplicates).
            tracing::warn!(error = %e, rows = sent.len() + freed.len(), "urgent outbox rows published but not recorded; a relay sends them again");
        }
    }
}
