//! Polling, for a Primero-run directorate that cannot push: every `poll_interval_ms` the
//! cases changed since the cursor are pulled page by page through the shared executor
//! (timeouts, retries, the agency's circuit breaker) and each goes through exactly the
//! same processing as a pushed one (`routes::process`): same mapping, same intake, same
//! once-per-message-id. The cursor moves only after a whole pull was taken in; a case the
//! hub refuses is parked with the reason (`connectors.inbound_parked`), never retried in
//! a loop; a hub that cannot take it now stops the pull, to be tried again next time.
//!
//! Every connectors replica runs the pollers, but one pull of an agency runs at a time:
//! a pull holds the agency's lease (`connectors.poll_leases`, renewed at every page,
//! running out by itself if its replica dies), and a replica finding it held skips its
//! turn.
//!
//! Every turn, whichever way it ends, is counted in `connectors.poll_turns` (one row per
//! agency: `turns`, `last_turn_at`, `last_outcome` of `pulled`, `lease_held_elsewhere`
//! or `failed`), so an operator can see when a pull was last attempted and why nothing
//! came. Recording it is best effort: a failure to write it is logged and the pulls go on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use himaya_connect::{Call, Credentials, Executor, Method, Outcome};
use himaya_connector_social_affairs::pull;
use himaya_proto::status::Lang;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::routes::{self, Route};
use super::App;

/// The start of time for an agency never pulled before.
const EPOCH: &str = "1970-01-01T00:00:00Z";
/// Pages in one pull at most: a server that ignores `page` cannot keep a pull going.
const MAX_PAGES: u64 = 1000;
/// How long a replica's lease on an agency's pull lasts; renewed at every page.
const LEASE: Duration = Duration::from_secs(120);

/// Each connected agency's credentials, shared with its delivery consumer.
pub type CredentialsById = HashMap<String, Arc<Credentials>>;

/// Starts one poller per Primero agency with a `poll_interval_ms` and an endpoint, and
/// keeps them in step with the directory: a poller stops when its agency is suspended,
/// removed or changed (a changed one starts again as it is now), and starts for an
/// agency that becomes pollable. Returns the one task that runs them all.
pub(super) fn start(
    app: &App,
    executor: Arc<Executor>,
    credentials: &CredentialsById,
    shutdown: &CancellationToken,
) -> Vec<JoinHandle<()>> {
    vec![tokio::spawn(follow(
        app.clone(),
        executor,
        credentials.clone(),
        shutdown.clone(),
    ))]
}

/// One running poller: the agency as it was when it started, how to stop it.
struct Poller {
    agency: Arc<himaya_settings::AgencySettings>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

async fn follow(
    app: App,
    executor: Arc<Executor>,
    credentials: CredentialsById,
    shutdown: CancellationToken,
) {
    // This replica, as the holder of the leases it takes.
    let holder = format!("replica-{}", uuid::Uuid::new_v4().simple());
    // The agencies the delivery consumers started with: their credentials are shared
    // (one Primero login for both) while the agency is unchanged.
    let initial = app.settings.agencies.snapshot();
    let every = Duration::from_millis(app.settings.directory.follow_ms);
    let mut running: HashMap<String, Poller> = HashMap::new();
    let mut seen: Option<Arc<himaya_settings::AgencyMap>> = None;
    loop {
        let now = app.settings.agencies.snapshot();
        if seen.as_ref().is_none_or(|s| !Arc::ptr_eq(s, &now)) {
            running.retain(|id, p| {
                let same = now.get(id).is_some_and(|a| Arc::ptr_eq(a, &p.agency));
                if !same {
                    p.stop.cancel();
                    tracing::info!(agency = %id, "poller stopped (the directory changed the agency)");
                }
                same
            });
            for (id, a) in now.iter() {
                let (Some(every), Some(_), himaya_settings::Protocol::PrimeroV2, false) =
                    (a.poll_interval_ms, &a.endpoint, a.protocol, a.suspended)
                else {
                    continue;
                };
                if running.contains_key(id) {
                    continue;
                }
                let shared = initial.get(id).is_some_and(|first| Arc::ptr_eq(first, a));
                let credentials = credentials
                    .get(id)
                    .filter(|_| shared)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Credentials::of(a)));
                let stop = shutdown.child_token();
                let task = tokio::spawn(poll(
                    app.clone(),
                    executor.clone(),
                    credentials,
                    id.clone(),
                    holder.clone(),
                    every,
                    stop.clone(),
                ));
                running.insert(
                    id.clone(),
                    Poller {
                        agency: a.clone(),
                        stop,
                        task,
                    },
                );
            }
            seen = Some(now);
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    for (_, p) in running.drain() {
        p.stop.cancel();
        let _ = p.task.await;
    }
}

/// One agency's poller: a pull every `every` milliseconds until `stop`.
async fn poll(
    app: App,
    executor: Arc<Executor>,
    credentials: Arc<Credentials>,
    id: String,
    holder: String,
    every: u64,
    stop: CancellationToken,
) {
    tracing::info!(agency = %id, every_ms = every, "polling the agency's Primero for changed cases");
    loop {
        match pull_once(&app, &executor, &credentials, &id, &holder, &stop).await {
            Turn::Pulled(taken) if taken > 0 => {
                tracing::info!(agency = %id, taken, "pulled changed cases")
            }
            Turn::Pulled(_) | Turn::LeaseHeldElsewhere => {}
            Turn::Failed(why) => {
                tracing::warn!(agency = %id, why, "pull stopped; trying again next time")
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(every)) => {}
        }
    }
}

/// How a poller's turn ended; `connectors.poll_turns.last_outcome` keeps its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// This replica held the lease and pulled: how many cases were taken in (refused ones
    /// are parked), the cursor moved past them.
    Pulled(usize),
    /// Another replica holds the agency's lease: the turn was skipped, or a pull stopped
    /// at the page where it found the lease taken (its cursor unmoved).
    LeaseHeldElsewhere,
    /// The pull stopped on the agency, the network, the hub or storage: why (names and
    /// codes, never a case's content). The cursor stays; the next turn tries again.
    Failed(String),
}

impl Turn {
    /// The outcome's name in `connectors.poll_turns` (its CHECK lists the same three).
    pub fn outcome(&self) -> &'static str {
        match self {
            Turn::Pulled(_) => "pulled",
            Turn::LeaseHeldElsewhere => "lease_held_elsewhere",
            Turn::Failed(_) => "failed",
        }
    }
}

/// Why a pull stopped before its end.
enum Stopped {
    /// Another replica took the agency's lease between two pages.
    LeaseLost,
    Failed(String),
}

impl From<String> for Stopped {
    fn from(why: String) -> Self {
        Stopped::Failed(why)
    }
}

impl From<&str> for Stopped {
    fn from(why: &str) -> Self {
        Stopped::Failed(why.to_owned())
    }
}

/// One turn: if this replica (`holder`) holds the agency's lease, pulls every page
/// changed since the cursor; another replica's turn is skipped. Counted in
/// `connectors.poll_turns` whichever way it ends.
pub async fn pull_once(
    app: &App,
    executor: &Executor,
    credentials: &Credentials,
    agency: &str,
    holder: &str,
    stop: &CancellationToken,
) -> Turn {
    let turn = match lease(app, agency, holder).await {
        Err(why) => Turn::Failed(why),
        Ok(false) => {
            tracing::debug!(
                agency,
                "another replica is pulling this agency; skipping this turn"
            );
            Turn::LeaseHeldElsewhere
        }
        Ok(true) => {
            let pulled = pull(app, executor, credentials, agency, holder, stop).await;
            if let Err(e) =
                sqlx::query("DELETE FROM poll_leases WHERE agency_id = $1 AND holder = $2")
                    .bind(agency)
                    .bind(holder)
                    .execute(&app.pool)
                    .await
            {
                tracing::warn!(agency, error = %e, "the pull's lease could not be released; it runs out by itself");
            }
            match pulled {
                Ok(taken) => Turn::Pulled(taken),
                Err(Stopped::LeaseLost) => {
                    // Only a page slower than the lease, or an operator, lets this happen.
                    tracing::warn!(
                        agency,
                        "another replica took over this agency's pull between two pages; it goes on from the cursor"
                    );
                    Turn::LeaseHeldElsewhere
                }
                Err(Stopped::Failed(why)) => Turn::Failed(why),
            }
        }
    };
    record(app, agency, &turn).await;
    turn
}

/// Counts the turn in `connectors.poll_turns`, after the pull and its lease are done
/// with: an operator's view, so a failure to write it is only logged (the agency and
/// the outcome, no case data) and never stops the pulls.
async fn record(app: &App, agency: &str, turn: &Turn) {
    let outcome = turn.outcome();
    if let Err(e) = sqlx::query(
        "INSERT INTO poll_turns (agency_id, turns, last_turn_at, last_outcome) VALUES ($1, 1, now(), $2)
         ON CONFLICT (agency_id) DO UPDATE SET turns = poll_turns.turns + 1,
           last_turn_at = EXCLUDED.last_turn_at, last_outcome = EXCLUDED.last_outcome",
    )
    .bind(agency)
    .bind(outcome)
    .execute(&app.pool)
    .await
    {
        tracing::warn!(agency, outcome, error = %e, "the poller's turn could not be recorded; pulls go on");
    }
}

/// Takes or renews the agency's lease for `holder`: whether it is ours now.
async fn lease(app: &App, agency: &str, holder: &str) -> Result<bool, String> {
    let ours: Option<String> = sqlx::query_scalar(
        "INSERT INTO poll_leases (agency_id, holder, until) VALUES ($1, $2, now() + make_interval(secs => $3))
         ON CONFLICT (agency_id) DO UPDATE SET holder = EXCLUDED.holder, until = EXCLUDED.until
          WHERE poll_leases.until < now() OR poll_leases.holder = EXCLUDED.holder
         RETURNING holder",
    )
    .bind(agency)
    .bind(holder)
    .bind(LEASE.as_secs_f64())
    .fetch_optional(&app.pool)
    .await
    .map_err(|e| format!("storage: {e}"))?;
    Ok(ours.is_some())
}

async fn pull(
    app: &App,
    executor: &Executor,
    credentials: &Credentials,
    agency: &str,
    holder: &str,
    stop: &CancellationToken,
) -> Result<usize, Stopped> {
    let settings = app.settings.agencies.get(agency).ok_or("unknown agency")?;
    let endpoint = settings.endpoint.as_deref().ok_or("no endpoint")?;
    let db = |e: sqlx::Error| format!("storage: {e}");
    let cursor: String = sqlx::query_scalar("SELECT cursor FROM poll_cursors WHERE agency_id = $1")
        .bind(agency)
        .fetch_optional(&app.pool)
        .await
        .map_err(db)?
        .unwrap_or_else(|| EPOCH.to_owned());
    let until = Utc::now().to_rfc3339();
    let parse = |t: &str| chrono::DateTime::parse_from_rfc3339(t).ok();
    let mut newest = cursor.clone();
    let mut taken = 0;
    for page in 1..=MAX_PAGES {
        if stop.is_cancelled() {
            return Err("stopping".into());
        }
        if page > 1 && !lease(app, agency, holder).await? {
            return Err(Stopped::LeaseLost);
        }
        let url = format!(
            "{}{}",
            endpoint.trim_end_matches('/'),
            pull::page_path(&cursor, &until, page)
        );
        let mut headers = Vec::new();
        if let Some(a) = credentials
            .authorization(executor, agency)
            .await
            .map_err(|e| Stopped::Failed(e.to_string()))?
        {
            headers.push(("Authorization", a));
        }
        let call = Call {
            agency_id: agency,
            method: Method::Get,
            url: &url,
            headers,
            content_type: "application/json",
            body: Vec::new(),
        };
        let answered = match executor.call(&call).await {
            Ok(a) => a,
            Err(e) => {
                if e == himaya_connect::TransientError::Unauthorized {
                    credentials.rejected(call.header("Authorization")).await;
                }
                return Err(e.to_string().into());
            }
        };
        let body = match answered.outcome {
            Outcome::Delivered {
                answer: Some(v), ..
            } => v,
            Outcome::Delivered { .. } => return Err("the page is not JSON".into()),
            Outcome::Rejected { status, .. } => {
                return Err(format!("the agency refused the pull (HTTP {status})").into())
            }
        };
        let (cases, more) = pull::read_page(&body).map_err(|e| Stopped::Failed(e.to_string()))?;
        let empty = cases.is_empty();
        for case in cases {
            // The cases the hub itself put into this Primero come back in the pull.
            if case.get("himaya_referral_id").is_some() {
                continue;
            }
            let changed = pull::last_updated(&case).map(str::to_owned);
            let wrapped = json!({ "data": case });
            match routes::process(Route::primero_case(), app, agency, &wrapped).await {
                Ok(_) => taken += 1,
                // Only a case that can never be taken as it is (its content refused) is
                // parked; anything else (the hub busy, a permission or conflict to sort
                // out) stops the pull here, the cursor stays, and the next pull redoes it.
                Err(r) if r.status != axum::http::StatusCode::UNPROCESSABLE_ENTITY => {
                    return Err(format!("{} ({})", r.message.render(Lang::English), r.code).into())
                }
                Err(r) => {
                    let message_id = case
                        .get("id")
                        .and_then(|v| v.as_str())
                        .map(himaya_connect::inbound::token);
                    // In English (the pull asks the hub without a language): for operators.
                    let reason = r.text();
                    tracing::warn!(
                        agency,
                        code = r.code,
                        field = r.field.as_deref().unwrap_or("-"),
                        "a pulled case was refused; parked for an operator"
                    );
                    sqlx::query(
                        "INSERT INTO inbound_parked (agency_id, route, message_id, http_status, reason) VALUES ($1, $2, $3, $4, $5)",
                    )
                    .bind(agency)
                    .bind(Route::primero_case().name())
                    .bind(message_id)
                    .bind(i32::from(r.status.as_u16()))
                    .bind(reason)
                    .execute(&app.pool)
                    .await
                    .map_err(db)?;
                }
            }
            if let Some(c) = changed.filter(|c| match (parse(c), parse(&newest)) {
                (Some(c), Some(n)) => c > n,
                _ => false,
            }) {
                newest = c;
            }
        }
        if !more || empty {
            break;
        }
    }
    sqlx::query(
        "INSERT INTO poll_cursors (agency_id, cursor) VALUES ($1, $2)
         ON CONFLICT (agency_id) DO UPDATE SET cursor = EXCLUDED.cursor, updated_at = now()
         WHERE poll_cursors.cursor::timestamptz < EXCLUDED.cursor::timestamptz",
    )
    .bind(agency)
    .bind(&newest)
    .execute(&app.pool)
    .await
    .map_err(db)?;
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::Turn;

    /// A name the table's CHECK refuses would lose the record of every such turn (only
    /// a warning), so each outcome must be one the migration lists.
    #[test]
    fn every_outcome_is_one_the_turns_table_accepts() {
        let migration = include_str!("../../connect/migrations/0007_poll_turns.sql");
        let check = migration
            .lines()
            .find(|l| l.contains("last_outcome TEXT"))
            .unwrap_or_default();
        for turn in [
            Turn::Pulled(0),
            Turn::LeaseHeldElsewhere,
            Turn::Failed(String::new()),
        ] {
            let quoted = format!("'{}'", turn.outcome());
            assert!(check.contains(&quoted), "{quoted} not in: {check}");
        }
    }
}
