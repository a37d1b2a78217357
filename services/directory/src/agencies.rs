//! The directory's agencies as data (`agencies`, every version in `agency_changes`):
//! seeded from the configuration when the directory starts, changed by the hub's
//! administrators through `PutAgency` and `SetAgencyStatus`. Every change is one
//! transaction: the row (its version checked), its history row (written by the table's
//! trigger) and its `directory.agency.changed` event in the outbox. Every process of the
//! hub follows the table (`himaya_store::agencies`) and so sees the change within
//! `directory.follow_ms`.

use std::collections::BTreeMap;

use chrono::Utc;
use himaya_bus::Exchange;
use himaya_events::{keys, new_message_id, AgencyChanged};
use himaya_proto::convert::{service_from, service_to};
use himaya_proto::status::{invalid_argument, lang, msg, person, status};
use himaya_proto::v1 as pb;
use himaya_record::validate::check_text;
use himaya_record::{AgencyType, Problem, ServiceType, Violations};
use himaya_settings::{AgencySettings, Protocol, Settings};
use sqlx::{PgPool, Postgres, Transaction};
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

/// Most agencies one page of `ListAgencies` holds.
pub const MAX_LISTED: i64 = 500;
/// Most governorates, services or place codes one agency may list.
const MAX_ENTRIES: usize = 100;
/// Longest name, endpoint or reference.
const MAX_TEXT: usize = 300;
/// Why an agency's status changed: the words `SetAgencyStatus` takes.
pub const REASONS: &[&str] = &[
    "compromised_key",
    "left_programme",
    "agreement_suspended",
    "error_corrected",
    "other",
];

/// One agency as stored.
#[derive(sqlx::FromRow, Clone, PartialEq)]
pub struct AgencyRow {
    pub agency_id: String,
    pub agency_type: String,
    pub name_ar: String,
    pub name_en: String,
    pub services: Vec<String>,
    pub governorates: Vec<String>,
    pub endpoint: Option<String>,
    pub protocol: String,
    pub inbound_token_ref: Option<String>,
    pub outbound_token_ref: Option<String>,
    pub login_user: Option<String>,
    pub login_password_ref: Option<String>,
    pub place_codes: sqlx::types::Json<BTreeMap<String, String>>,
    pub poll_interval_ms: Option<i64>,
    pub status: String,
    pub version: i64,
    pub source: String,
    pub updated_by: String,
    pub reason: Option<String>,
}

const COLUMNS: &str = "agency_id, agency_type, name_ar, name_en, services, governorates, endpoint,
     protocol, inbound_token_ref, outbound_token_ref, login_user, login_password_ref,
     place_codes, poll_interval_ms, status, version, source, updated_by, reason";

impl AgencyRow {
    /// The row a configured agency seeds: its tokens taken from each process's own
    /// configuration.
    fn seeded(id: &str, a: &AgencySettings) -> AgencyRow {
        let configured = |present: bool| present.then(|| "configuration".to_owned());
        AgencyRow {
            agency_id: id.to_owned(),
            agency_type: a.agency_type.as_str().to_owned(),
            name_ar: a.name_ar.clone(),
            name_en: a.name_en.clone(),
            services: a.services.iter().map(|s| s.as_str().to_owned()).collect(),
            governorates: a.governorates.clone(),
            endpoint: a.endpoint.clone(),
            protocol: a.protocol.as_str().to_owned(),
            inbound_token_ref: configured(a.inbound_token.is_some()),
            outbound_token_ref: configured(a.outbound_token.is_some()),
            login_user: a.login_user.clone(),
            login_password_ref: configured(a.login_password.is_some()),
            place_codes: sqlx::types::Json(a.place_codes.clone()),
            poll_interval_ms: a.poll_interval_ms.and_then(|n| i64::try_from(n).ok()),
            status: "active".into(),
            version: 1,
            source: "configuration".into(),
            updated_by: "configuration".into(),
            reason: None,
        }
    }

    /// Whether the configuration says the same as this row (what a restart must not
    /// write again).
    fn same_entry(&self, other: &AgencyRow) -> bool {
        // The entry alone: not its version, nor who wrote it last and why.
        let entry = |r: &AgencyRow| AgencyRow {
            version: 0,
            source: String::new(),
            updated_by: String::new(),
            reason: None,
            ..r.clone()
        };
        entry(self) == entry(other)
    }

    pub fn to_pb(&self) -> pb::Agency {
        pb::Agency {
            agency_id: self.agency_id.clone(),
            agency_type: self.agency_type.clone(),
            name_ar: self.name_ar.clone(),
            name_en: self.name_en.clone(),
            services: self
                .services
                .iter()
                .filter_map(|s| ServiceType::parse(s))
                .map(|s| service_to(s).into())
                .collect(),
            governorates: self.governorates.clone(),
            version: self.version,
            status: status_to_pb(&self.status).into(),
        }
    }

    fn event(&self) -> AgencyChanged {
        AgencyChanged {
            message_id: new_message_id(),
            occurred_at: Utc::now().to_rfc3339(),
            agency_id: self.agency_id.clone(),
            agency_type: self.agency_type.clone(),
            name_ar: self.name_ar.clone(),
            name_en: self.name_en.clone(),
            services: self.services.clone(),
            governorates: self.governorates.clone(),
            protocol: self.protocol.clone(),
            connected: self.endpoint.is_some(),
            status: self.status.clone(),
            version: self.version,
            updated_by: self.updated_by.clone(),
            reason: self.reason.clone(),
        }
    }
}

fn status_to_pb(s: &str) -> pb::AgencyStatus {
    match s {
        "active" => pb::AgencyStatus::Active,
        "suspended" => pb::AgencyStatus::Suspended,
        "removed" => pb::AgencyStatus::Removed,
        _ => pb::AgencyStatus::Unspecified,
    }
}

fn storage(e: sqlx::Error) -> Status {
    tracing::error!(error = %e, "directory agencies storage failed");
    status(Code::Unavailable, &msg!("storage-unavailable"))
}

pub async fn load(
    conn: impl sqlx::PgExecutor<'_>,
    id: &str,
    lock: bool,
) -> Result<Option<AgencyRow>, sqlx::Error> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM agencies WHERE agency_id = $1{lock}"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// One page of the directory, by id, after `after`; removed agencies left out.
pub async fn page(pool: &PgPool, after: &str) -> Result<Vec<AgencyRow>, Status> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM agencies WHERE status <> 'removed' AND agency_id > $1
          ORDER BY agency_id LIMIT $2"
    ))
    .bind(after)
    .bind(MAX_LISTED + 1)
    .fetch_all(pool)
    .await
    .map_err(storage)
}

/// Writes `row` (already at its new version) and its event in one transaction.
async fn write(tx: &mut Transaction<'_, Postgres>, row: &AgencyRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO agencies (agency_id, agency_type, name_ar, name_en, services, governorates,
                               endpoint, protocol, inbound_token_ref, outbound_token_ref,
                               login_user, login_password_ref, place_codes, poll_interval_ms,
                               status, version, source, updated_by, reason)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
         ON CONFLICT (agency_id) DO UPDATE SET
            agency_type = EXCLUDED.agency_type, name_ar = EXCLUDED.name_ar,
            name_en = EXCLUDED.name_en, services = EXCLUDED.services,
            governorates = EXCLUDED.governorates, endpoint = EXCLUDED.endpoint,
            protocol = EXCLUDED.protocol, inbound_token_ref = EXCLUDED.inbound_token_ref,
            outbound_token_ref = EXCLUDED.outbound_token_ref, login_user = EXCLUDED.login_user,
            login_password_ref = EXCLUDED.login_password_ref, place_codes = EXCLUDED.place_codes,
            poll_interval_ms = EXCLUDED.poll_interval_ms, status = EXCLUDED.status,
            version = EXCLUDED.version, source = EXCLUDED.source,
            updated_by = EXCLUDED.updated_by, reason = EXCLUDED.reason",
    )
    .bind(&row.agency_id)
    .bind(&row.agency_type)
    .bind(&row.name_ar)
    .bind(&row.name_en)
    .bind(&row.services)
    .bind(&row.governorates)
    .bind(&row.endpoint)
    .bind(&row.protocol)
    .bind(&row.inbound_token_ref)
    .bind(&row.outbound_token_ref)
    .bind(&row.login_user)
    .bind(&row.login_password_ref)
    .bind(&row.place_codes)
    .bind(row.poll_interval_ms)
    .bind(&row.status)
    .bind(row.version)
    .bind(&row.source)
    .bind(&row.updated_by)
    .bind(&row.reason)
    .execute(&mut **tx)
    .await?;
    himaya_store::outbox::enqueue_event(
        tx,
        Exchange::Events,
        keys::AGENCY_CHANGED,
        &row.event(),
        1,
        &row.agency_id,
    )
    .await
    .map_err(|e| match e {
        himaya_store::StoreError::Database(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    })?;
    Ok(())
}

/// Writes the configuration's agencies into the table: those it lacks, and those last
/// written by the configuration that it now describes otherwise. An agency an
/// administrator changed through the API is the API's from then on.
pub async fn seed(pool: &PgPool, settings: &Settings) -> Result<usize, sqlx::Error> {
    let mut written = 0;
    for (id, a) in settings.agencies.configured().iter() {
        let mut tx = pool.begin().await?;
        let mut row = AgencyRow::seeded(id, a);
        match load(&mut *tx, id, true).await? {
            None => {}
            Some(old) if old.source == "configuration" && !old.same_entry(&row) => {
                row.version = old.version + 1;
            }
            Some(_) => continue,
        }
        write(&mut tx, &row).await?;
        tx.commit().await?;
        written += 1;
    }
    if written > 0 {
        tracing::info!(
            agencies = written,
            "directory seeded from the configuration"
        );
    }
    Ok(written)
}

/// The administrator making a change: a social-affairs agency covering every governorate
/// (the gateway has let only social-affairs agencies through). Returns who, as recorded.
pub fn administrator(settings: &Settings, meta: &MetadataMap) -> Result<(String, String), Status> {
    let (id, agency) = himaya_component::calling_agency(settings, meta).map_err(|e| e.status())?;
    if agency.agency_type != AgencyType::SocialAffairs || !agency.covers_everywhere() {
        tracing::warn!(agency = %id, "directory change refused: not an administrator");
        return Err(status(
            Code::PermissionDenied,
            &msg!("directory-not-administrator"),
        ));
    }
    let by = match person(meta) {
        Some(p) => format!("{id}/{p}"),
        None => id.clone(),
    };
    Ok((id, by))
}

/// Checks a `PutAgency` request; returns the row it describes (version and author to be
/// set by the caller).
pub fn check_put(settings: &Settings, r: &pb::PutAgencyRequest) -> Result<AgencyRow, Violations> {
    let mut v = Violations::new();
    let id = r.agency_id.trim();
    if !is_agency_id(id) {
        v.push(
            "agency_id",
            Problem::InvalidCode {
                expected: "1-63 characters of a-z, 0-9 and -, not starting or ending with -",
            },
        );
    }
    let agency_type = AgencyType::parse(r.agency_type.trim());
    if agency_type.is_none() {
        v.push(
            "agency_type",
            not_chosen(AgencyType::ALL.iter().map(|t| t.as_str())),
        );
    }
    for (field, text) in [("name_ar", &r.name_ar), ("name_en", &r.name_en)] {
        if text.trim().is_empty() {
            v.push(field, Problem::Required);
        } else {
            check_text(&mut v, field, text.trim(), MAX_TEXT);
        }
    }
    let mut services = Vec::new();
    if r.services.len() > MAX_ENTRIES {
        v.push("services", Problem::TooMany { max: MAX_ENTRIES });
    }
    for (i, s) in r.services.iter().enumerate().take(MAX_ENTRIES) {
        match service_from(*s) {
            Some(s) => services.push(s.as_str().to_owned()),
            None => v.push(
                format!("services[{i}]"),
                not_chosen(ServiceType::ALL.iter().map(|t| t.as_str())),
            ),
        }
    }
    let mut governorates = Vec::new();
    if r.governorates.is_empty() {
        v.push("governorates", Problem::AtLeastOne);
    }
    if r.governorates.len() > MAX_ENTRIES {
        v.push("governorates", Problem::TooMany { max: MAX_ENTRIES });
    }
    for (i, g) in r.governorates.iter().enumerate().take(MAX_ENTRIES) {
        let g = g.trim();
        if g == "*" {
            governorates.push("*".to_owned());
            continue;
        }
        match settings.gazetteer.governorate(g) {
            Some(known) => governorates.push(known.name_ar.clone()),
            None => v.push(
                format!("governorates[{i}]"),
                Problem::NotInGazetteer {
                    choices: settings.gazetteer.choices(),
                },
            ),
        }
    }
    let endpoint = Some(r.endpoint.trim()).filter(|e| !e.is_empty());
    if let Some(e) = endpoint {
        if e.chars().count() > MAX_TEXT
            || !(e.starts_with("https://") || e.starts_with("http://"))
            || reqwest_like_url_invalid(e)
        {
            v.push(
                "endpoint",
                Problem::InvalidCode {
                    expected: "an http(s):// URL of the agency's system, or empty when it is not connected",
                },
            );
        }
    }
    let protocol = match r.protocol.trim() {
        "" => Some(Protocol::HimayaJson),
        p => Protocol::parse(p),
    };
    if protocol.is_none() {
        v.push(
            "protocol",
            not_chosen(Protocol::ALL.iter().map(|p| p.as_str())),
        );
    }
    let mut token_ref = |field: &str, text: &str| -> Option<String> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let ok = text.chars().count() <= MAX_TEXT
            && (text.strip_prefix("env:").is_some_and(|n| {
                !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            }) || text
                .strip_prefix("file:")
                .is_some_and(|p| p.starts_with('/'))
                || text == "configuration");
        if !ok {
            v.push(
                field,
                Problem::InvalidCode {
                    expected: "where the hub finds the token: env:VARIABLE or file:/absolute/path (never the token itself)",
                },
            );
        }
        Some(text.to_owned())
    };
    let inbound_token_ref = token_ref("inbound_token_ref", &r.inbound_token_ref);
    let outbound_token_ref = token_ref("outbound_token_ref", &r.outbound_token_ref);
    if r.place_codes.len() > MAX_ENTRIES {
        v.push("place_codes", Problem::TooMany { max: MAX_ENTRIES });
    }
    for (name, code) in r.place_codes.iter().take(MAX_ENTRIES) {
        if settings.gazetteer.governorate(name).is_none() {
            v.push(
                "place_codes",
                Problem::NotInGazetteer {
                    choices: settings.gazetteer.choices(),
                },
            );
            break;
        }
        check_text(&mut v, "place_codes", code, 64);
    }
    let (Some(agency_type), Some(protocol), true) = (agency_type, protocol, v.is_empty()) else {
        return Err(v);
    };
    Ok(AgencyRow {
        agency_id: id.to_owned(),
        agency_type: agency_type.as_str().to_owned(),
        name_ar: r.name_ar.trim().to_owned(),
        name_en: r.name_en.trim().to_owned(),
        services,
        governorates,
        endpoint: endpoint.map(str::to_owned),
        protocol: protocol.as_str().to_owned(),
        inbound_token_ref,
        outbound_token_ref,
        login_user: None,
        login_password_ref: None,
        place_codes: sqlx::types::Json(
            r.place_codes
                .iter()
                .filter_map(|(n, c)| {
                    settings
                        .gazetteer
                        .governorate(n)
                        .map(|g| (g.name_ar.clone(), c.trim().to_owned()))
                })
                .collect(),
        ),
        poll_interval_ms: None,
        status: "active".into(),
        version: 0,
        source: "api".into(),
        updated_by: String::new(),
        reason: None,
    })
}

/// A URL with what no agency endpoint has: spaces, control characters, no host.
fn reqwest_like_url_invalid(e: &str) -> bool {
    let rest = e.split_once("://").map_or("", |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    host.is_empty() || e.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn not_chosen<'a>(choices: impl Iterator<Item = &'a str>) -> Problem {
    Problem::NotChosen {
        choices: choices.collect::<Vec<_>>().join(", "),
    }
}

/// An agency id is a DNS label: its certificate names it `<id>.agency.himaya`.
pub fn is_agency_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 63
        && !id.starts_with('-')
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// `PutAgency`: adds (expected 0) or replaces the entry at the expected version.
pub async fn put(
    pool: &PgPool,
    settings: &Settings,
    meta: &MetadataMap,
    r: pb::PutAgencyRequest,
) -> Result<AgencyRow, Status> {
    let (_, by) = administrator(settings, meta)?;
    let mut row = check_put(settings, &r).map_err(|v| invalid_argument(&v, lang(meta)))?;
    let mut tx = pool.begin().await.map_err(storage)?;
    let old = load(&mut *tx, &row.agency_id, true)
        .await
        .map_err(storage)?;
    match (&old, r.expected_version) {
        (None, 0) => row.version = 1,
        // Removed: added again from where it was.
        (Some(o), e) if o.status == "removed" && e == o.version => row.version = o.version + 1,
        (Some(o), 0) => {
            return Err(status(
                Code::AlreadyExists,
                &msg!(
                    "directory-agency-exists",
                    agency_id = &row.agency_id,
                    current = o.version
                ),
            ))
        }
        (Some(o), e) if e == o.version => {
            row.version = o.version + 1;
            // What the API does not set stays as it was (a Primero login, its polling,
            // a suspension).
            row.login_user = o.login_user.clone();
            row.login_password_ref = o.login_password_ref.clone();
            row.poll_interval_ms = o.poll_interval_ms;
            row.status = o.status.clone();
        }
        (Some(o), e) => {
            return Err(status(
                Code::Aborted,
                &msg!(
                    "directory-agency-stale",
                    agency_id = &row.agency_id,
                    current = o.version,
                    expected = e
                ),
            ))
        }
        (None, _) => {
            return Err(status(
                Code::NotFound,
                &msg!("directory-agency-not-found", agency_id = &row.agency_id),
            ))
        }
    }
    row.updated_by = by;
    write(&mut tx, &row).await.map_err(storage)?;
    tx.commit().await.map_err(storage)?;
    tracing::info!(agency = %row.agency_id, version = row.version, by = %row.updated_by, "directory agency written");
    Ok(row)
}

/// `SetAgencyStatus`: suspends, reactivates or removes an agency at the expected version.
pub async fn set_status(
    pool: &PgPool,
    settings: &Settings,
    meta: &MetadataMap,
    r: pb::SetAgencyStatusRequest,
) -> Result<AgencyRow, Status> {
    let (own, by) = administrator(settings, meta)?;
    let mut v = Violations::new();
    let wanted = match pb::AgencyStatus::try_from(r.status) {
        Ok(pb::AgencyStatus::Active) => "active",
        Ok(pb::AgencyStatus::Suspended) => "suspended",
        Ok(pb::AgencyStatus::Removed) => "removed",
        _ => {
            v.push(
                "status",
                not_chosen(["ACTIVE", "SUSPENDED", "REMOVED"].into_iter()),
            );
            ""
        }
    };
    let reason = r.reason.trim();
    if !REASONS.contains(&reason) {
        v.push("reason", not_chosen(REASONS.iter().copied()));
    }
    let id = r.agency_id.trim();
    if !is_agency_id(id) {
        v.push(
            "agency_id",
            Problem::InvalidCode {
                expected: "1-63 characters of a-z, 0-9 and -, not starting or ending with -",
            },
        );
    }
    if !v.is_empty() {
        return Err(invalid_argument(&v, lang(meta)));
    }
    if id == own && wanted != "active" {
        return Err(status(
            Code::FailedPrecondition,
            &msg!("directory-agency-self"),
        ));
    }
    let mut tx = pool.begin().await.map_err(storage)?;
    let Some(mut row) = load(&mut *tx, id, true).await.map_err(storage)? else {
        return Err(status(
            Code::NotFound,
            &msg!("directory-agency-not-found", agency_id = id),
        ));
    };
    if row.status == "removed" {
        return Err(status(
            Code::FailedPrecondition,
            &msg!(
                "directory-agency-gone",
                agency_id = id,
                current = row.version
            ),
        ));
    }
    if row.version != r.expected_version {
        return Err(status(
            Code::Aborted,
            &msg!(
                "directory-agency-stale",
                agency_id = id,
                current = row.version,
                expected = r.expected_version
            ),
        ));
    }
    if row.status == wanted {
        // Already so: nothing written, nothing announced.
        return Ok(row);
    }
    row.status = wanted.to_owned();
    row.version += 1;
    row.source = "api".into();
    row.updated_by = by;
    row.reason = Some(reason.to_owned());
    write(&mut tx, &row).await.map_err(storage)?;
    tx.commit().await.map_err(storage)?;
    tracing::info!(agency = %id, status = wanted, reason, version = row.version, by = %row.updated_by, "directory agency status changed");
    Ok(row)
}
