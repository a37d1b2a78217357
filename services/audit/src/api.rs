//! `himaya.v1.Audit`: reading the disclosure log and the state of its chain.
//!
//! Scope (see proto/himaya/v1/audit.proto): a social-affairs agency covering every
//! governorate reads the whole log; any other agency only the entries whose recipient is
//! itself. A person the web front acts for must hold the `auditor` role. The log holds
//! ids and codes only; nothing read here is written to the service log but counts.

// The helpers return `tonic::Status` like the handlers they serve (which must).
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use himaya_proto::status::{acting, invalid_argument, lang, msg, status, Lang};
use himaya_proto::v1 as pb;
use himaya_record::{AgencyType, CaseId, Problem, Violations};
use himaya_settings::{AgencySettings, Settings};
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use tokio::sync::Mutex;
use tonic::metadata::MetadataMap;
use tonic::{Code, Request, Response, Status};

use crate::chain::{self, Checkpoint, Entry, Tamper, Verifier, GENESIS};

/// Entries one page holds by default, and at most.
pub const DEFAULT_PAGE: i32 = 50;
pub const MAX_PAGE: i32 = 200;
/// Entries one `GetChainStatus` call verifies at most.
pub const VERIFY_PER_CALL: i64 = 5000;

/// The decisions the log records.
const DECISIONS: &[&str] = &["permit", "deny", "break_glass"];

pub struct AuditApi {
    settings: Arc<Settings>,
    pool: PgPool,
    progress: Mutex<Progress>,
    /// Where a failed verification is counted (`himaya_audit_verification_failures_total`).
    metrics: Arc<himaya_metrics::Metrics>,
}

/// Where the rolling verification stands (in this process).
#[derive(Debug)]
struct Progress {
    /// The last entry verified in the current pass: seq and hash.
    seq: i64,
    hash: String,
    /// The last complete pass: when it ended and the entries it verified.
    full: Option<(DateTime<Utc>, i64)>,
}

impl AuditApi {
    pub fn new(
        settings: Arc<Settings>,
        pool: PgPool,
        metrics: Arc<himaya_metrics::Metrics>,
    ) -> AuditApi {
        AuditApi {
            settings,
            pool,
            metrics,
            progress: Mutex::new(Progress {
                seq: 0,
                hash: GENESIS.to_owned(),
                full: None,
            }),
        }
    }

    /// The calling agency and whether it reads the whole log; a person acting must be
    /// an auditor.
    fn scope(&self, meta: &MetadataMap) -> Result<(String, bool), Status> {
        let (id, agency) =
            himaya_component::calling_agency(&self.settings, meta).map_err(|e| e.status())?;
        if let Some(a) = acting(meta) {
            if !a.has("auditor") {
                tracing::warn!(agency = %id, person = %a.person, "disclosure log read refused: not an auditor");
                return Err(status(Code::PermissionDenied, &msg!("audit-auditors-only")));
            }
        }
        Ok((id.clone(), national(&agency)))
    }

    async fn list(
        &self,
        meta: &MetadataMap,
        r: pb::ListDisclosuresRequest,
    ) -> Result<pb::DisclosurePage, Status> {
        let lang = lang(meta);
        let (agency_id, whole) = self.scope(meta)?;
        let f = checked(&r, lang)?;
        let recipient = match (whole, f.recipient.as_str()) {
            (true, any) => any.to_owned(),
            (false, "") => agency_id.clone(),
            (false, own) if own == agency_id => agency_id.clone(),
            (false, _) => {
                tracing::warn!(agency = %agency_id, "disclosure log read refused: another recipient's entries");
                return Err(status(
                    Code::PermissionDenied,
                    &msg!("audit-own-entries-only"),
                ));
            }
        };
        let page = match r.page_size {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        // One more than the page, to know whether another page follows.
        let rows = sqlx::query_as::<_, Entry>(
            "SELECT * FROM log
              WHERE ($1 = '' OR case_id = $1)
                AND ($2 = '' OR recipient = $2)
                AND ($3 = '' OR person = $3)
                AND ($4 = '' OR decision = $4)
                AND ($5 = '' OR channel = $5)
                AND (CASE WHEN $6::timestamptz IS NULL THEN true ELSE at::timestamptz >= $6 END)
                AND (CASE WHEN $7::timestamptz IS NULL THEN true ELSE at::timestamptz < $7 END)
                AND ($8 = 0 OR seq < $8)
              ORDER BY seq DESC
              LIMIT $9",
        )
        .bind(&f.case_id)
        .bind(&recipient)
        .bind(&f.person)
        .bind(&f.decision)
        .bind(&f.channel)
        .bind(f.from)
        .bind(f.until)
        .bind(r.before_seq)
        .bind(i64::from(page) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        let more = rows.len() > page as usize;
        let entries: Vec<pb::DisclosureEntry> =
            rows.into_iter().take(page as usize).map(entry).collect();
        let next_before_seq = match (more, entries.last()) {
            (true, Some(e)) => e.seq,
            _ => 0,
        };
        tracing::info!(agency = %agency_id, whole_log = whole, entries = entries.len(), "disclosure log read");
        Ok(pb::DisclosurePage {
            entries,
            next_before_seq,
            whole_log: whole,
        })
    }

    async fn status(&self, meta: &MetadataMap) -> Result<pb::ChainStatus, Status> {
        self.scope(meta)?;
        let mut p = self.progress.lock().await;
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM log")
            .fetch_one(&self.pool)
            .await
            .map_err(storage)?;
        let (checked, found) = self.verify_some(&mut p, head).await?;
        let last_checkpoint = self.last_checkpoint().await?;
        let state = match (&found, p.full) {
            (Some(_), _) => pb::ChainState::Tampered,
            (None, Some(_)) => pb::ChainState::Intact,
            (None, None) => pb::ChainState::InProgress,
        };
        if let Some(t) = &found {
            self.metrics.audit.verification_failures.inc();
            tracing::error!(
                seq = t.seq(),
                problem = t.code(),
                "disclosure log verification found tampering"
            );
        }
        Ok(pb::ChainStatus {
            length: head,
            state: state.into(),
            verified_through: match (p.seq, p.full) {
                // A pass just completed: the next one starts from the first entry.
                (0, Some((_, n))) => n,
                (seq, _) => seq,
            },
            checked_now: checked,
            max_entries_per_call: VERIFY_PER_CALL,
            last_full_pass_at: p.full.map(|(at, _)| at.to_rfc3339()),
            last_full_pass_length: p.full.map(|(_, n)| n).unwrap_or(0),
            problem_seq: found.as_ref().map(Tamper::seq).unwrap_or(0),
            problem: found.map(|t| t.code().to_owned()).unwrap_or_default(),
            last_checkpoint,
        })
    }

    /// Verifies up to [`VERIFY_PER_CALL`] entries after where the pass stands; the
    /// entries checked and the first problem found. A problem leaves the pass where it
    /// was, so every later call finds it again.
    async fn verify_some(
        &self,
        p: &mut Progress,
        head: i64,
    ) -> Result<(i64, Option<Tamper>), Status> {
        if p.seq > head {
            // Entries verified before are gone.
            return Ok((
                0,
                Some(Tamper::Truncated {
                    seq: p.seq,
                    last: head,
                }),
            ));
        }
        let upto = p.seq + VERIFY_PER_CALL;
        // The checkpoints this call can meet, and the first one signed past the head
        // (met by no entry: the tail was cut).
        let checkpoints = sqlx::query_as::<_, Checkpoint>(
            "(SELECT * FROM checkpoints WHERE seq > $1 AND seq <= $2)
             UNION ALL
             (SELECT * FROM checkpoints WHERE seq > $3 ORDER BY seq LIMIT 1)",
        )
        .bind(p.seq)
        .bind(upto)
        .bind(head.max(upto))
        .fetch_all(&self.pool)
        .await
        .map_err(storage)?;
        let mut v = match Verifier::resume(p.seq, &p.hash, &checkpoints) {
            Ok(v) => v,
            Err(t) => return Ok((0, Some(t))),
        };
        let rows =
            sqlx::query_as::<_, Entry>("SELECT * FROM log WHERE seq > $1 ORDER BY seq LIMIT $2")
                .bind(p.seq)
                .bind(VERIFY_PER_CALL)
                .fetch_all(&self.pool)
                .await
                .map_err(storage)?;
        let mut checked = 0;
        for e in &rows {
            checked += 1;
            if let Err(t) = v.push(e) {
                return Ok((checked, Some(t)));
            }
        }
        if (rows.len() as i64) < VERIFY_PER_CALL {
            // The head: a whole pass is done (every checkpoint met), the next starts over.
            match v.finish() {
                Ok(n) => {
                    p.full = Some((Utc::now(), n));
                    p.seq = 0;
                    p.hash = GENESIS.to_owned();
                    Ok((checked, None))
                }
                Err(t) => Ok((checked, Some(t))),
            }
        } else {
            let (seq, hash) = v.last();
            p.seq = seq;
            p.hash = hash.to_owned();
            Ok((checked, None))
        }
    }

    async fn last_checkpoint(&self) -> Result<Option<pb::Checkpoint>, Status> {
        let last =
            sqlx::query_as::<_, Checkpoint>("SELECT * FROM checkpoints ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await
                .map_err(storage)?;
        let Some(c) = last else {
            return Ok(None);
        };
        Ok(Some(pb::Checkpoint {
            seq: c.seq,
            key_id: key_id(&c.public_key),
            signature_valid: chain::signature_ok(&c),
            signed_at: c.signed_at,
            public_key: c.public_key,
        }))
    }
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditApi {
    async fn list_disclosures(
        &self,
        req: Request<pb::ListDisclosuresRequest>,
    ) -> Result<Response<pb::DisclosurePage>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(Response::new(self.list(&meta, r).await?))
    }

    async fn get_chain_status(
        &self,
        req: Request<pb::GetChainStatusRequest>,
    ) -> Result<Response<pb::ChainStatus>, Status> {
        let (meta, _, _) = req.into_parts();
        Ok(Response::new(self.status(&meta).await?))
    }
}

/// The national oversight: a social-affairs agency covering every governorate.
pub fn national(agency: &AgencySettings) -> bool {
    agency.agency_type == AgencyType::SocialAffairs && agency.governorates.iter().any(|g| g == "*")
}

/// A signing key's id: the first 16 hex digits of the SHA-256 of its public key.
pub fn key_id(public_key_hex: &str) -> String {
    let bytes = hex::decode(public_key_hex.trim()).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))[..16].to_owned()
}

/// The filters, checked.
struct Filter {
    case_id: String,
    recipient: String,
    person: String,
    decision: String,
    channel: String,
    from: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
}

fn checked(r: &pb::ListDisclosuresRequest, lang: Lang) -> Result<Filter, Status> {
    let f = r.filter.clone().unwrap_or_default();
    let mut v = Violations::new();
    let trim = |s: &str| s.trim().to_owned();
    let (case_id, recipient, person) = (trim(&f.case_id), trim(&f.recipient), trim(&f.person));
    let (decision, channel) = (trim(&f.decision), trim(&f.channel));
    if !case_id.is_empty() && CaseId::parse(&case_id).is_err() {
        v.push(
            "filter.case_id",
            Problem::InvalidCode {
                expected: "a case id such as case_0190f1b2c3d47e8f9a0b1c2d3e4f5a6b",
            },
        );
    }
    let id_like = |s: &str, extra: char| {
        s.len() <= 64
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == extra)
    };
    if !recipient.is_empty() && !id_like(&recipient, '-') {
        v.push(
            "filter.recipient",
            Problem::InvalidCode {
                expected: "an agency id of the directory, such as health-cairo",
            },
        );
    }
    let a_person = |p: &str| p.starts_with("psn_") && id_like(p, '_');
    if !person.is_empty() && !a_person(&person) {
        v.push(
            "filter.person",
            Problem::InvalidCode {
                expected: "a person id such as psn_0190f1b2c3d47e8f9a0b1c2d3e4f5a6b",
            },
        );
    }
    if !decision.is_empty() && !DECISIONS.contains(&decision.as_str()) {
        v.push(
            "filter.decision",
            Problem::NotChosen {
                choices: DECISIONS.join(", "),
            },
        );
    }
    let a_channel = |c: &str| c.len() <= 32 && id_like(c, '_');
    if !channel.is_empty() && !a_channel(&channel) {
        v.push(
            "filter.channel",
            Problem::InvalidCode {
                expected: "a channel such as grpc_read, bus_delivery, break_glass, export",
            },
        );
    }
    let mut instant = |field: &str, s: &str| -> Option<DateTime<Utc>> {
        if s.trim().is_empty() {
            return None;
        }
        match DateTime::parse_from_rfc3339(s.trim()) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                v.push(field, Problem::InvalidDate);
                None
            }
        }
    };
    let from = instant("filter.from", &f.from);
    let until = instant("filter.until", &f.until);
    if r.page_size < 0 {
        v.push(
            "page_size",
            Problem::OutOfRange {
                min: 0,
                max: i64::from(MAX_PAGE),
            },
        );
    }
    if r.before_seq < 0 {
        v.push(
            "before_seq",
            Problem::OutOfRange {
                min: 0,
                max: i64::MAX,
            },
        );
    }
    if !v.is_empty() {
        return Err(invalid_argument(&v, lang));
    }
    Ok(Filter {
        case_id,
        recipient,
        person,
        decision,
        channel,
        from,
        until,
    })
}

fn entry(e: Entry) -> pb::DisclosureEntry {
    let b = e.body;
    pb::DisclosureEntry {
        seq: b.seq,
        at: b.at,
        source: b.source,
        channel: b.channel,
        case_id: b.case_id,
        referral_id: b.referral_id,
        recipient: b.recipient,
        purpose: b.purpose,
        decision: b.decision,
        reason: b.reason,
        categories: b.categories,
        basis: b.basis,
        delivery_message_id: b.delivery_message_id,
        person: b.person,
        hash: e.hash,
    }
}

fn storage(e: sqlx::Error) -> Status {
    tracing::warn!(error = %e, "disclosure log storage failed");
    status(Code::Unavailable, &msg!("storage-unavailable"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_short_stable_hashes_of_the_public_key() {
        let id = key_id("00ff");
        assert_eq!(id.len(), 16);
        assert_eq!(id, key_id(" 00ff "));
        assert_ne!(id, key_id("00fe"));
    }

    #[test]
    fn filters_are_checked_and_named_without_their_values() {
        let r = pb::ListDisclosuresRequest {
            filter: Some(pb::DisclosureFilter {
                case_id: "not a case".into(),
                person: "someone".into(),
                decision: "maybe".into(),
                from: "yesterday".into(),
                ..Default::default()
            }),
            page_size: -1,
            before_seq: 0,
        };
        let Err(e) = checked(&r, Lang::English) else {
            panic!("accepted");
        };
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        for field in [
            "filter.case_id",
            "filter.person",
            "filter.decision",
            "filter.from",
            "page_size",
        ] {
            assert!(e.message().contains(field), "{field}: {}", e.message());
        }
        assert!(!e.message().contains("someone") && !e.message().contains("yesterday"));
        let ok = pb::ListDisclosuresRequest {
            filter: Some(pb::DisclosureFilter {
                decision: "break_glass".into(),
                channel: "grpc_read".into(),
                from: "2026-01-01T00:00:00+02:00".into(),
                ..Default::default()
            }),
            page_size: 500,
            before_seq: 10,
        };
        assert!(checked(&ok, Lang::English).is_ok());
    }
}
