//! The disclosure log (schema `audit`): every disclosure decision made anywhere in the hub
//! (`audit.disclosure.recorded` from the cases service, `audit.disclosures.recorded` for a
//! routing transaction's decisions from the router, enqueued in the transaction of the
//! decision) appended to one hash chain, with periodic ed25519-signed
//! checkpoints. `himaya audit verify` checks the chain; exported checkpoints reveal a
//! truncated tail too. `himaya.v1.Audit` (module [`api`]) reads it: the entries in the
//! caller's scope, and the chain's verification, a bounded step per call.

pub mod api;
pub mod chain;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use chain::{
    checkpoint_message, entry_hash, Checkpoint, Entry, EntryBody, Tamper, Verifier, GENESIS,
};
use ed25519_dalek::{Signer, SigningKey};
use himaya_bus::{BatchHandler, Exchange, HandleError, Incoming};
use himaya_component::{Component, Context, Decoding, EventHandler, StartError, Started};
use himaya_events::{
    decode, event_name, keys, ConsentWithdrawn, DisclosureRecorded, DisclosuresRecorded, Event,
    WithdrawalNotice,
};
use himaya_settings::Settings;
use sqlx::PgPool;

pub use api::AuditApi;

pub const SCHEMA: &str = "audit";
pub const QUEUE: &str = himaya_bus::queues::AUDIT_DISCLOSURES;
pub const WITHDRAWALS_QUEUE: &str = "audit.consent-withdrawn";
/// Entries read per round trip while verifying.
const PAGE: i64 = 5000;

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("storage failed")]
    Store(#[from] himaya_store::StoreError),
    #[error("the bus failed")]
    Bus(#[from] himaya_bus::BusError),
    #[error("the signing key at {path} could not be read or created: {why}")]
    Key { path: String, why: String },
    #[error(transparent)]
    Tamper(#[from] Tamper),
}

himaya_store::from_sqlx!(AuditError::Store);

/// The disclosure log as a component of the hub.
pub struct Audit;

impl Component for Audit {
    const NAME: &'static str = "audit";

    /// Starts the log's consumers and its checkpointer, and serves its read API.
    async fn start(ctx: Context) -> Result<Started, StartError> {
        let settings = ctx.settings.clone();
        let key = signing_key(&settings.audit.signing_key_file)?;
        let (pool, relay) = himaya_store::start_service(
            &settings,
            SCHEMA,
            &sqlx::migrate!("./migrations"),
            ctx.bus.clone(),
            himaya_bus::Stage::OnTheWay,
            ctx.shutdown.clone(),
        )
        .await?;
        let appender = ctx
            .subscribe_batches(
                QUEUE,
                Exchange::Events,
                &[keys::DISCLOSURE_RECORDED, keys::DISCLOSURES_RECORDED],
                BATCH,
                Appender { pool: pool.clone() },
            )
            .await?;
        let withdrawals = ctx
            .subscribe(
                WITHDRAWALS_QUEUE,
                Exchange::Events,
                &[keys::CONSENT_WITHDRAWN],
                Decoding(Withdrawals { pool: pool.clone() }),
            )
            .await?;
        let api_pool = pool.clone();
        let every = Duration::from_secs(settings.audit.checkpoint_interval_secs.max(1));
        let shutdown = ctx.shutdown.clone();
        let checkpointer = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
                if let Err(e) = checkpoint(&pool, &key).await {
                    tracing::warn!(error = %e, "checkpoint failed; will retry");
                }
            }
        });
        let max = settings.grpc.max_message_bytes;
        let api = himaya_proto::v1::audit_server::AuditServer::new(AuditApi::new(
            settings,
            api_pool,
            ctx.metrics.clone(),
        ))
        .max_decoding_message_size(max);
        Ok(Started::default()
            .grpc(api)
            .tasks([relay, appender, withdrawals, checkpointer]))
    }
}

/// Reads the hub's ed25519 key (hex, 32 bytes), creating one (mode 0600) if the file does
/// not exist: convenient in development; in production, provision the file.
pub fn signing_key(path: &Path) -> Result<SigningKey, AuditError> {
    let err = |why: String| AuditError::Key {
        path: path.display().to_string(),
        why,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim()).map_err(|_| err("not hex".into()))?;
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| err("not 32 bytes".into()))?;
            Ok(SigningKey::from_bytes(&bytes))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            getrandom::getrandom(&mut bytes).map_err(|e| err(e.to_string()))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
            }
            match write_private(path, &hex::encode(bytes)) {
                Ok(()) => {
                    tracing::warn!(path = %path.display(), "generated a new disclosure-log signing key; provision your own in production");
                    Ok(SigningKey::from_bytes(&bytes))
                }
                // Another process created it first: use theirs.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => signing_key(path),
                Err(e) => Err(err(e.to_string())),
            }
        }
        Err(e) => Err(err(e.to_string())),
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

struct Appender {
    pool: PgPool,
}

/// Messages appended in one transaction, at most. A batch is what is already waiting on
/// the queue (never more is waited for), so under a light load each is one message;
/// under a heavy one the chain's lock is taken once per batch instead of once per
/// decision. A message holds one decision (from the cases service) or a routing
/// transaction's decisions (from the router, up to 256).
pub const BATCH: u16 = 64;

/// The queue carries both messages of the log: one decision (`audit.disclosure.recorded`)
/// or many (`audit.disclosures.recorded`). A message that is neither is parked alone.
impl BatchHandler for Appender {
    type Item = Vec<DisclosureRecorded>;

    /// A disclosure is logged after it was decided: the log gives way to the stages on
    /// a referral's way to its agency.
    fn stage(&self) -> himaya_bus::Stage {
        himaya_bus::Stage::Record
    }

    fn read(&self, msg: &Incoming) -> Result<Vec<DisclosureRecorded>, HandleError> {
        let payload = msg.payload();
        match event_name(payload).map_err(HandleError::park)? {
            DisclosuresRecorded::NAME => decode::<DisclosuresRecorded>(payload)
                .map(|batch| batch.disclosures)
                .map_err(HandleError::park),
            _ => decode::<DisclosureRecorded>(payload)
                .map(|one| vec![one])
                .map_err(HandleError::park),
        }
    }

    async fn handle_batch(&self, items: Vec<Vec<DisclosureRecorded>>) -> Result<(), HandleError> {
        let events: Vec<DisclosureRecorded> = items.into_iter().flatten().collect();
        append(&self.pool, &events)
            .await
            .map(|_| ())
            .map_err(HandleError::retry)
    }
}

/// Appends decisions at the head of the chain, in the order given, in one transaction:
/// one advisory lock (appends are serialized), one look for message ids already logged,
/// one read of the head, one insert. Each message id is appended once, whether it was
/// logged before (a redelivery) or is given twice (the first is kept). Returns how many
/// were appended.
pub async fn append(pool: &PgPool, events: &[DisclosureRecorded]) -> Result<usize, AuditError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('himaya.audit.chain'))")
        .execute(&mut *tx)
        .await?;
    let mut once = HashSet::new();
    let events: Vec<&DisclosureRecorded> = events
        .iter()
        .filter(|e| once.insert(e.message_id.as_str()))
        .collect();
    let ids: Vec<&str> = events.iter().map(|e| e.message_id.as_str()).collect();
    let seen: HashSet<String> =
        sqlx::query_scalar("SELECT message_id FROM log WHERE message_id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let events: Vec<&DisclosureRecorded> = events
        .into_iter()
        .filter(|e| !seen.contains(&e.message_id))
        .collect();
    if events.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    let (last, mut prev_hash) = head.unwrap_or((0, GENESIS.to_owned()));
    let mut entries = Vec::with_capacity(events.len());
    for (seq, e) in (last + 1..).zip(&events) {
        let body = EntryBody {
            seq,
            message_id: e.message_id.clone(),
            at: e.occurred_at.clone(),
            source: e.source.clone(),
            channel: e.channel.clone(),
            case_id: e.case_id.clone(),
            referral_id: e.referral_id.clone(),
            recipient: e.recipient.clone(),
            purpose: e.purpose.clone(),
            decision: e.decision.clone(),
            reason: e.reason.clone(),
            categories: e.categories.clone(),
            basis: e.basis.clone(),
            delivery_message_id: e.delivery_message_id.clone(),
            person: e.person.clone(),
        };
        let hash = entry_hash(&prev_hash, &body);
        let prev = std::mem::replace(&mut prev_hash, hash.clone());
        entries.push(Entry {
            body,
            prev_hash: prev,
            hash,
        });
    }
    insert(&mut tx, &entries).await?;
    notify_permits(&mut tx, &entries).await?;
    tx.commit().await?;
    Ok(entries.len())
}

/// Inserts the entries with one statement: a column per array, one element per entry
/// (the list columns as JSON arrays, their order kept).
async fn insert(conn: &mut sqlx::PgConnection, entries: &[Entry]) -> Result<(), AuditError> {
    fn column<'a, T: ?Sized>(entries: &'a [Entry], f: impl Fn(&'a Entry) -> &'a T) -> Vec<&'a T> {
        entries.iter().map(f).collect()
    }
    let seqs: Vec<i64> = entries.iter().map(|e| e.body.seq).collect();
    let opt = |f: fn(&EntryBody) -> &Option<String>| -> Vec<Option<&str>> {
        entries.iter().map(|e| f(&e.body).as_deref()).collect()
    };
    let list = |f: fn(&EntryBody) -> &Vec<String>| -> Vec<sqlx::types::Json<&[String]>> {
        entries
            .iter()
            .map(|e| sqlx::types::Json(f(&e.body).as_slice()))
            .collect()
    };
    sqlx::query(
        "INSERT INTO log (seq, message_id, at, source, channel, case_id, referral_id, recipient, purpose,
                          decision, reason, categories, basis, delivery_message_id, prev_hash, hash, person)
         SELECT e.seq, e.message_id, e.at, e.source, e.channel, e.case_id, e.referral_id, e.recipient, e.purpose,
                e.decision, e.reason,
                ARRAY(SELECT v FROM jsonb_array_elements_text(e.categories) WITH ORDINALITY AS c(v, i) ORDER BY i),
                ARRAY(SELECT v FROM jsonb_array_elements_text(e.basis) WITH ORDINALITY AS b(v, i) ORDER BY i),
                e.delivery_message_id, e.prev_hash, e.hash, e.person
           FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                       $8::text[], $9::text[], $10::text[], $11::text[], $12::jsonb[], $13::jsonb[], $14::text[],
                       $15::text[], $16::text[], $17::text[])
             AS e(seq, message_id, at, source, channel, case_id, referral_id, recipient, purpose,
                  decision, reason, categories, basis, delivery_message_id, prev_hash, hash, person)",
    )
    .bind(&seqs)
    .bind(column(entries, |e| e.body.message_id.as_str()))
    .bind(column(entries, |e| e.body.at.as_str()))
    .bind(column(entries, |e| e.body.source.as_str()))
    .bind(column(entries, |e| e.body.channel.as_str()))
    .bind(column(entries, |e| e.body.case_id.as_str()))
    .bind(opt(|b| &b.referral_id))
    .bind(column(entries, |e| e.body.recipient.as_str()))
    .bind(column(entries, |e| e.body.purpose.as_str()))
    .bind(column(entries, |e| e.body.decision.as_str()))
    .bind(opt(|b| &b.reason))
    .bind(list(|b| &b.categories))
    .bind(list(|b| &b.basis))
    .bind(opt(|b| &b.delivery_message_id))
    .bind(column(entries, |e| e.prev_hash.as_str()))
    .bind(column(entries, |e| e.hash.as_str()))
    .bind(opt(|b| &b.person))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Decided just before a withdrawal, logged just after: each permit resting on a consent
/// already withdrawn gets its notice too (one query for the batch).
async fn notify_permits(
    conn: &mut sqlx::PgConnection,
    entries: &[Entry],
) -> Result<(), AuditError> {
    let permits: Vec<&EntryBody> = entries
        .iter()
        .map(|e| &e.body)
        .filter(|b| b.decision == "permit" && !b.basis.is_empty())
        .collect();
    if permits.is_empty() {
        return Ok(());
    }
    let cases: Vec<&str> = permits.iter().map(|b| b.case_id.as_str()).collect();
    let withdrawn: Vec<(String, String, Vec<String>, String)> = sqlx::query_as(
        "SELECT case_id, consent_id, categories, withdrawn_at FROM withdrawals
          WHERE case_id = ANY($1) ORDER BY case_id, consent_id",
    )
    .bind(&cases)
    .fetch_all(&mut *conn)
    .await?;
    if withdrawn.is_empty() {
        return Ok(());
    }
    for body in permits {
        for (case_id, consent_id, categories, at) in &withdrawn {
            if *case_id == body.case_id && body.basis.contains(consent_id) {
                let w = Withdrawn {
                    case_id,
                    consent_id,
                    categories,
                    withdrawn_at: at,
                };
                notify(conn, &w, &body.recipient).await?;
            }
        }
    }
    Ok(())
}

/// A withdrawn consent, as the notices describe it.
struct Withdrawn<'a> {
    case_id: &'a str,
    consent_id: &'a str,
    categories: &'a [String],
    withdrawn_at: &'a str,
}

/// Queues one notice to `agency` (once per consent and agency) through the outbox.
async fn notify(
    conn: &mut sqlx::PgConnection,
    w: &Withdrawn<'_>,
    agency: &str,
) -> Result<(), AuditError> {
    let notice_id = format!(
        "wdn_{}",
        himaya_events::new_message_id().trim_start_matches("msg_")
    );
    let fresh = sqlx::query(
        "INSERT INTO notices (notice_id, case_id, consent_id, agency_id) VALUES ($1, $2, $3, $4)
         ON CONFLICT (case_id, consent_id, agency_id) DO NOTHING",
    )
    .bind(&notice_id)
    .bind(w.case_id)
    .bind(w.consent_id)
    .bind(agency)
    .execute(&mut *conn)
    .await?;
    if fresh.rows_affected() == 0 {
        return Ok(());
    }
    let notice = WithdrawalNotice {
        message_id: himaya_events::new_message_id(),
        occurred_at: chrono::Utc::now().to_rfc3339(),
        notice_id,
        agency_id: agency.to_owned(),
        case_id: w.case_id.to_owned(),
        consent_id: w.consent_id.to_owned(),
        categories: w.categories.to_vec(),
        withdrawn_at: w.withdrawn_at.to_owned(),
    };
    himaya_store::outbox::enqueue_event(
        conn,
        Exchange::Events,
        keys::WITHDRAWAL_NOTICE,
        &notice,
        9,
        &notice.case_id,
    )
    .await?;
    tracing::info!(case_id = %notice.case_id, agency = %agency, notice_id = %notice.notice_id, "withdrawal notice queued");
    Ok(())
}

/// Consumes `consent.withdrawn`: every agency whose logged disclosure rested on the
/// consent gets a notice.
struct Withdrawals {
    pool: PgPool,
}

impl Withdrawals {
    async fn withdraw(&self, e: &ConsentWithdrawn) -> Result<(), AuditError> {
        let mut tx = self.pool.begin().await?;
        // Same lock as appends: no permit slips between the lookup and the record.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('himaya.audit.chain'))")
            .execute(&mut *tx)
            .await?;
        let fresh = sqlx::query(
            "INSERT INTO withdrawals (case_id, consent_id, categories, withdrawn_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&e.case_id)
        .bind(&e.consent_id)
        .bind(&e.categories)
        .bind(&e.withdrawn_at)
        .execute(&mut *tx)
        .await?;
        if fresh.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(());
        }
        let recipients: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT recipient FROM log
              WHERE case_id = $1 AND decision = 'permit' AND $2 = ANY(basis)
              ORDER BY recipient",
        )
        .bind(&e.case_id)
        .bind(&e.consent_id)
        .fetch_all(&mut *tx)
        .await?;
        let w = Withdrawn {
            case_id: &e.case_id,
            consent_id: &e.consent_id,
            categories: &e.categories,
            withdrawn_at: &e.withdrawn_at,
        };
        for agency in &recipients {
            notify(&mut tx, &w, agency).await?;
        }
        tx.commit().await?;
        tracing::info!(case_id = %e.case_id, recipients = recipients.len(), "consent withdrawal: earlier recipients notified");
        Ok(())
    }
}

impl EventHandler for Withdrawals {
    type Event = ConsentWithdrawn;
    type Error = AuditError;
    async fn handle(&self, event: ConsentWithdrawn, _: &Incoming) -> Result<(), AuditError> {
        self.withdraw(&event).await
    }
}

/// Signs the head of the chain if it moved since the last checkpoint; returns its seq.
pub async fn checkpoint(pool: &PgPool, key: &SigningKey) -> Result<Option<i64>, AuditError> {
    let head: Option<(i64, String)> =
        sqlx::query_as("SELECT seq, hash FROM log ORDER BY seq DESC LIMIT 1")
            .fetch_optional(pool)
            .await?;
    let Some((seq, hash)) = head else {
        return Ok(None);
    };
    let signature = key.sign(&checkpoint_message(seq, &hash));
    let done = sqlx::query(
        "INSERT INTO checkpoints (seq, hash, signed_at, public_key, signature)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
    )
    .bind(seq)
    .bind(&hash)
    .bind(chrono::Utc::now().to_rfc3339())
    .bind(hex::encode(key.verifying_key().to_bytes()))
    .bind(hex::encode(signature.to_bytes()))
    .execute(pool)
    .await?;
    if done.rows_affected() == 1 {
        tracing::info!(seq, "disclosure log checkpoint signed");
    }
    Ok(Some(seq))
}

/// Every checkpoint, for export.
pub async fn checkpoints(pool: &PgPool) -> Result<Vec<Checkpoint>, AuditError> {
    Ok(
        sqlx::query_as::<_, Checkpoint>("SELECT * FROM checkpoints ORDER BY seq")
            .fetch_all(pool)
            .await?,
    )
}

/// Verifies the whole log in `seq` order, page by page, against `exported` checkpoints
/// (and the stored ones); returns how many entries it holds, or the first tampering.
pub async fn verify(pool: &PgPool, exported: &[Checkpoint]) -> Result<i64, AuditError> {
    let mut all = checkpoints(pool).await?;
    all.extend(exported.iter().cloned());
    let mut v = Verifier::new(&all)?;
    let mut after = i64::MIN;
    loop {
        let entries =
            sqlx::query_as::<_, Entry>("SELECT * FROM log WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(after)
                .bind(PAGE)
                .fetch_all(pool)
                .await?;
        for e in &entries {
            after = e.body.seq;
            v.push(e)?;
        }
        if (entries.len() as i64) < PAGE {
            return Ok(v.finish()?);
        }
    }
}

/// A pool on the log for the operator's commands (no migrations, no bus).
pub async fn connect(settings: &Settings) -> Result<PgPool, AuditError> {
    Ok(himaya_store::connect_service(&settings.database, SCHEMA).await?)
}
