//! Every process of the hub follows the directory's table of agencies
//! (`directory.agencies`): it reads the table's highest change number once a second (one
//! index-only statement) and, when it moved, reads the table again and replaces the
//! process's set of agencies ([`himaya_settings::Agencies`]) at once. A change made
//! through the `Directory` API (an agency added, its endpoint changed, suspended) so
//! reaches the gateway, the router, the connectors and the webhooks of every replica
//! within about a second, without a restart. An agency whose row did not change keeps
//! its very `Arc`, so the connectors can tell which agencies changed by pointer.
//!
//! Until the directory has created its table (it may start after this process), the
//! configuration's agencies stand. Tokens are not in the table, only where this process
//! finds them: `configuration` (this process's own `agencies.<id>.*_token`), `env:NAME`
//! or `file:/path` (read once per change of the row, at most 4 KiB).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use himaya_record::{AgencyType, ServiceType};
use himaya_settings::{AgencyMap, AgencySettings, Protocol, SecretString, Settings};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// The directory's published view of its agencies (migration `0002_agencies.sql`).
const TABLE: &str = "directory.agencies_v1";
/// And of the certificates it revoked that have not expired (`0003_certificates.sql`).
const REVOKED: &str = "directory.revoked_certificates_v1";
/// The most a token file may hold.
const MAX_TOKEN_FILE: u64 = 4096;

#[derive(sqlx::FromRow)]
struct Row {
    agency_id: String,
    agency_type: String,
    name_ar: String,
    name_en: String,
    services: Vec<String>,
    governorates: Vec<String>,
    endpoint: Option<String>,
    protocol: String,
    inbound_token_ref: Option<String>,
    outbound_token_ref: Option<String>,
    login_user: Option<String>,
    login_password_ref: Option<String>,
    place_codes: sqlx::types::Json<BTreeMap<String, String>>,
    poll_interval_ms: Option<i64>,
    status: String,
    seq: i64,
}

/// What a process knows of the table: the change it last read, each agency as built then.
pub struct Follower {
    /// Whether the directory has created its view: asked (`to_regclass`) until it has,
    /// since reading a view that is not there yet leaves an error in PostgreSQL's log at
    /// every start of a process whose components start before the directory's.
    there: bool,
    seen: i64,
    seen_revoked: Option<i64>,
    built: HashMap<String, (i64, Arc<AgencySettings>)>,
    /// The configuration's agencies, for the tokens the table says to take from it.
    seed: Arc<AgencyMap>,
}

impl Follower {
    pub fn new(settings: &Settings) -> Follower {
        Follower {
            there: false,
            seen: 0,
            seen_revoked: None,
            built: HashMap::new(),
            seed: settings.agencies.configured(),
        }
    }

    /// Reads the table (and the revoked certificates) if they changed since the last
    /// call and replaces `settings`' agencies with them. `Ok(false)`: nothing changed, or
    /// the directory has not created its table yet.
    pub async fn refresh(
        &mut self,
        pool: &PgPool,
        settings: &Settings,
    ) -> Result<bool, sqlx::Error> {
        if !self.there {
            self.there = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(TABLE)
                .fetch_one(pool)
                .await?;
            if !self.there {
                return Ok(false);
            }
        }
        let newest = match newest_change(pool, TABLE).await {
            Ok(n) => n.unwrap_or(0),
            Err(e) if not_there_yet(&e) => return Ok(false),
            Err(e) => return Err(e),
        };
        let revoked = match newest_change(pool, REVOKED).await {
            Ok(n) => Some(n.unwrap_or(0)),
            // A directory not migrated that far yet revokes nothing.
            Err(e) if not_there_yet(&e) => None,
            Err(e) => return Err(e),
        };
        let mut changed = false;
        if revoked != self.seen_revoked {
            let fingerprints: Vec<String> = match revoked {
                Some(_) => {
                    sqlx::query_scalar(&format!("SELECT fingerprint FROM {REVOKED}"))
                        .fetch_all(pool)
                        .await?
                }
                None => Vec::new(),
            };
            let set = fingerprints
                .iter()
                .filter_map(|f| hex_32(f))
                .collect::<std::collections::HashSet<_>>();
            tracing::info!(revoked = set.len(), "revoked certificates followed");
            settings.agencies.replace_revoked(set);
            self.seen_revoked = revoked;
            changed = true;
        }
        if newest == 0 || newest == self.seen {
            return Ok(changed);
        }
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT agency_id, agency_type, name_ar, name_en, services, governorates, endpoint,
                    protocol, inbound_token_ref, outbound_token_ref, login_user,
                    login_password_ref, place_codes, poll_interval_ms, status, seq
               FROM {TABLE} WHERE status <> 'removed'"
        ))
        .fetch_all(pool)
        .await?;
        let mut map = AgencyMap::new();
        let mut built = HashMap::with_capacity(rows.len());
        for row in rows {
            let agency = match self.built.get(&row.agency_id) {
                Some((seq, a)) if *seq == row.seq => a.clone(),
                _ => match self.build(&row) {
                    Some(a) => Arc::new(a),
                    None => continue,
                },
            };
            built.insert(row.agency_id.clone(), (row.seq, agency.clone()));
            map.insert(row.agency_id, agency);
        }
        tracing::info!(agencies = map.len(), change = newest, "directory followed");
        settings.agencies.replace(map);
        self.built = built;
        self.seen = newest;
        Ok(true)
    }

    fn build(&self, row: &Row) -> Option<AgencySettings> {
        let id = row.agency_id.as_str();
        let (Some(agency_type), Some(protocol)) = (
            AgencyType::parse(&row.agency_type),
            Protocol::parse(&row.protocol),
        ) else {
            // The API writes only known words: a row it did not write is an operator's.
            tracing::error!(agency = %id, "directory row names an unknown agency type or protocol; left out");
            return None;
        };
        let seed = self.seed.get(id);
        let token =
            |field: &'static str, reference: &Option<String>, configured: Option<&SecretString>| {
                reference
                    .as_deref()
                    .and_then(|r| resolve(id, field, r, configured))
            };
        Some(AgencySettings {
            agency_type,
            name_ar: row.name_ar.clone(),
            name_en: row.name_en.clone(),
            services: row
                .services
                .iter()
                .filter_map(|s| ServiceType::parse(s))
                .collect(),
            governorates: row.governorates.clone(),
            endpoint: row.endpoint.clone(),
            protocol,
            inbound_token: token(
                "inbound_token",
                &row.inbound_token_ref,
                seed.and_then(|a| a.inbound_token.as_ref()),
            ),
            outbound_token: token(
                "outbound_token",
                &row.outbound_token_ref,
                seed.and_then(|a| a.outbound_token.as_ref()),
            ),
            login_user: row.login_user.clone(),
            login_password: token(
                "login_password",
                &row.login_password_ref,
                seed.and_then(|a| a.login_password.as_ref()),
            ),
            place_codes: row.place_codes.0.clone(),
            poll_interval_ms: row.poll_interval_ms.and_then(|n| u64::try_from(n).ok()),
            suspended: row.status == "suspended",
        })
    }
}

/// The highest change number of a directory view.
async fn newest_change(pool: &PgPool, view: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(&format!("SELECT max(seq) FROM {view}"))
        .fetch_one(pool)
        .await
}

/// A fingerprint as the directory writes it (64 hex digits).
fn hex_32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// Where a token is: `configuration`, `env:NAME` or `file:/path`. A reference that
/// cannot be read leaves the agency without that token (its calls then fail and are
/// counted as such), logged with the agency and the kind of reference, never the value.
fn resolve(
    agency: &str,
    field: &'static str,
    reference: &str,
    configured: Option<&SecretString>,
) -> Option<SecretString> {
    let found = if reference == "configuration" {
        configured.cloned()
    } else if let Some(name) = reference.strip_prefix("env:") {
        std::env::var(name).ok().map(SecretString::from)
    } else if let Some(path) = reference.strip_prefix("file:") {
        read_token_file(path).map(SecretString::from)
    } else {
        None
    };
    if found.is_none() {
        let kind = reference.split(':').next().unwrap_or("");
        tracing::error!(
            agency,
            field,
            reference_kind = kind,
            "the agency's token could not be found where the directory says"
        );
    }
    found
}

fn read_token_file(path: &str) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE).read_to_string(&mut text).ok()?;
    let token = text.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// The directory's table or schema is not there yet (the directory has not started).
fn not_there_yet(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "42P01" || c == "3F000" || c == "3D000")
}

/// Follows the table every `every` until `shutdown`; a failed read is logged (once per
/// outage) and tried again at the next tick, the agencies standing as last read.
/// `nudged` (the `directory.agency.changed` event reaching this process) reads at once.
pub async fn follow(
    pool: PgPool,
    settings: Arc<Settings>,
    mut follower: Follower,
    every: Duration,
    nudged: Arc<tokio::sync::Notify>,
    shutdown: CancellationToken,
) {
    let mut failing = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
            () = nudged.notified() => {}
        }
        match follower.refresh(&pool, &settings).await {
            Ok(_) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "the directory's agencies could not be read; the last read stands");
            }
            Err(_) => {}
        }
    }
}
