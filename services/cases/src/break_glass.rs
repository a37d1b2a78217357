//! Break-glass: emergency access to the minimal emergency data set without consent. Only
//! listed agency types (the emergency line on any case, the others on high-risk cases),
//! with a reason code and a justification; time-boxed; every access in the disclosure log
//! (decision `break_glass`); every grant queued for the case-owning ministry's review.

use chrono::{Duration, Utc};
use himaya_bus::Exchange;
use himaya_events::{keys, new_message_id, DisclosureRecorded};
use himaya_proto::convert as cv;
use himaya_proto::status::msg;
use himaya_proto::v1 as pb;
use himaya_record::lifecycle::BreakGlassOutcome;
use himaya_record::validate::{check_text, MAX_NARRATIVE};
use himaya_record::{AgencyType, CaseId, Problem, RiskLevel, Violations};
use tonic::metadata::MetadataMap;

use crate::db::load_case;
use crate::{CasesError, State};

pub(crate) async fn open(
    state: &State,
    meta: &MetadataMap,
    r: pb::BreakGlassRequest,
) -> Result<pb::SharedCase, CasesError> {
    let s = &state.settings.break_glass;
    let (agency_id, agency) = state.calling_agency(meta)?;
    let agency_type = agency.agency_type;
    let mut v = Violations::new();
    let case_id = CaseId::parse(r.case_id.trim())
        .map_err(|_| {
            v.push(
                "case_id",
                Problem::InvalidCode {
                    expected: "a case id such as case_0190f1b2c3d47e8f9a0b1c2d3e4f5a6b",
                },
            )
        })
        .ok();
    if !s.reason_codes.iter().any(|c| c == r.reason_code.trim()) {
        v.push(
            "reason_code",
            Problem::NotChosen {
                choices: s.reason_codes.join(", "),
            },
        );
    }
    if r.justification.trim().chars().count() < 10 {
        v.push("justification", Problem::Required);
    }
    check_text(&mut v, "justification", &r.justification, MAX_NARRATIVE);
    if r.actor.trim().is_empty() {
        v.push("actor", Problem::Required);
    }
    check_text(&mut v, "actor", &r.actor, 64);
    let purpose = himaya_record::Purpose::EmergencyResponse;
    let caller = agency_id.as_str();
    let refuse = |case_id: CaseId, reason: &'static str| async move {
        tracing::warn!(case_id = %case_id, agency = %caller, reason, "break-glass refused");
        let mut event =
            crate::read::decision_event("break_glass", &case_id, caller, purpose, Err(reason));
        event.person = himaya_proto::status::person(meta);
        crate::read::log_events(state, &[event]).await
    };
    // The agency type is checked before anything else of the request: a caller that may
    // never break the glass learns nothing about the case.
    if !s.agency_types.contains(&agency_type) {
        if let Some(case_id) = case_id {
            refuse(case_id, "break_glass_not_for_agency_type").await?;
        }
        return Err(CasesError::PermissionDenied(msg!(
            "break-glass-not-for-agency-type",
            agency_type = agency_type.to_string()
        )));
    }
    let case_id = match (case_id, v.is_empty()) {
        (Some(case_id), true) => case_id,
        (Some(case_id), false) => {
            // Without a reason code or justification nothing is disclosed, and the
            // attempt is in the disclosure log.
            refuse(case_id, "break_glass_without_reason").await?;
            return Err(CasesError::Invalid(v, himaya_proto::status::lang(meta)));
        }
        (None, _) => return Err(CasesError::Invalid(v, himaya_proto::status::lang(meta))),
    };
    let record = load_case(&state.pool, &case_id).await?.ok_or_else(|| {
        CasesError::NotFound(msg!("case-not-found", case_id = case_id.to_string()))
    })?;
    if agency_type != AgencyType::EmergencyLine && record.risk_level != RiskLevel::High {
        refuse(case_id, "break_glass_not_high_risk").await?;
        return Err(CasesError::PermissionDenied(msg!(
            "break-glass-not-high-risk",
            case_id = case_id.to_string()
        )));
    }
    let now = Utc::now();
    let mut tx = state.pool.begin().await?;
    // Within the window the same agency reuses its access; after it, a new one.
    let open: Option<(String, chrono::DateTime<Utc>)> = sqlx::query_as(
        "SELECT break_glass_id, expires_at FROM break_glass
          WHERE case_id = $1 AND agency_id = $2 AND expires_at > $3
          ORDER BY expires_at DESC LIMIT 1 FOR UPDATE",
    )
    .bind(case_id.to_string())
    .bind(&agency_id)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    let opened = open.is_none();
    let (id, expires_at) = match open {
        Some(o) => o,
        None => {
            let id = format!("bkg_{}", new_message_id().trim_start_matches("msg_"));
            let expires_at = now + Duration::minutes(s.window_minutes);
            sqlx::query(
                "INSERT INTO break_glass (break_glass_id, case_id, agency_id, actor, reason_code, justification, granted_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(&id)
            .bind(case_id.to_string())
            .bind(&agency_id)
            .bind(r.actor.trim())
            .bind(r.reason_code.trim())
            .bind(r.justification.trim())
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            let version: i64 = sqlx::query_scalar("SELECT version FROM cases WHERE case_id = $1")
                .bind(case_id.to_string())
                .fetch_one(&mut *tx)
                .await?;
            crate::db::history(
                &mut tx,
                &case_id.to_string(),
                version,
                r.actor.trim(),
                &format!(
                    "break-glass {id} by {agency_id} ({}), until {expires_at}",
                    r.reason_code.trim()
                ),
            )
            .await?;
            (id, expires_at)
        }
    };
    sqlx::query("UPDATE break_glass SET reads = reads + 1 WHERE break_glass_id = $1")
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    let d = himaya_sharing::redact(&record, &s.categories)?;
    let event = DisclosureRecorded {
        message_id: new_message_id(),
        occurred_at: now.to_rfc3339(),
        source: "cases".into(),
        channel: "break_glass".into(),
        case_id: case_id.to_string(),
        referral_id: None,
        recipient: agency_id.clone(),
        purpose: purpose.as_str().into(),
        decision: "break_glass".into(),
        reason: Some(r.reason_code.trim().to_owned()),
        categories: d.categories.iter().map(|c| c.as_str().to_owned()).collect(),
        basis: vec![id.clone()],
        delivery_message_id: None,
        // The person who broke the glass, when the web front proved them.
        person: himaya_proto::status::person(meta),
    };
    himaya_store::outbox::enqueue_event(
        &mut tx,
        Exchange::Events,
        keys::DISCLOSURE_RECORDED,
        &event,
        9,
        &event.case_id,
    )
    .await?;
    tx.commit().await?;
    if opened {
        state.metrics.consent.break_glass.inc();
    }
    tracing::warn!(case_id = %case_id, agency = %agency_id, break_glass_id = %id, "break-glass access: queued for supervisor review");
    Ok(pb::SharedCase {
        case_id: case_id.to_string(),
        version: record.version,
        document_json: d.document.to_string(),
        categories: cv::wires(&d.categories),
        deliveries: vec![],
        break_glass_id: Some(id),
        break_glass_expires_at: Some(expires_at.to_rfc3339()),
    })
}

/// The accesses awaiting review (or all), on cases in the reviewing agency's area.
pub(crate) async fn list(
    state: &State,
    all: bool,
    reviewer: &himaya_settings::AgencySettings,
) -> Result<Vec<pb::BreakGlassAccess>, CasesError> {
    let everywhere = reviewer.governorates.iter().any(|g| g == "*");
    let rows = sqlx::query_as::<_, AccessRow>(
        "SELECT b.* FROM break_glass b JOIN cases c USING (case_id)
          WHERE ($1 OR b.reviewed_at IS NULL) AND ($2 OR c.governorate = ANY($3))
          ORDER BY b.granted_at LIMIT 1000",
    )
    .bind(all)
    .bind(everywhere)
    .bind(&reviewer.governorates)
    .fetch_all(&state.pool)
    .await?;
    rows.into_iter()
        .map(AccessRow::into_access)
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

/// A `break_glass` row as stored; [`AccessRow::into_access`] checks its outcome.
#[derive(sqlx::FromRow)]
struct AccessRow {
    break_glass_id: String,
    case_id: String,
    agency_id: String,
    actor: String,
    reason_code: String,
    justification: String,
    granted_at: chrono::DateTime<Utc>,
    expires_at: chrono::DateTime<Utc>,
    reads: i64,
    reviewed_by: Option<String>,
    reviewed_at: Option<chrono::DateTime<Utc>>,
    outcome: Option<String>,
    review_notes: Option<String>,
}

impl AccessRow {
    fn into_access(self) -> Result<pb::BreakGlassAccess, sqlx::Error> {
        Ok(pb::BreakGlassAccess {
            break_glass_id: self.break_glass_id,
            case_id: self.case_id,
            agency_id: self.agency_id,
            actor: self.actor,
            reason_code: self.reason_code,
            justification: self.justification,
            granted_at: self.granted_at.to_rfc3339(),
            expires_at: self.expires_at.to_rfc3339(),
            reads: self.reads,
            reviewed_by: self.reviewed_by,
            reviewed_at: self.reviewed_at.map(|t| t.to_rfc3339()),
            outcome: crate::work::wire_of_opt::<BreakGlassOutcome>(
                "outcome",
                self.outcome.as_deref(),
            )?,
            review_notes: self.review_notes,
        })
    }
}

/// The case an access was granted on (`None`: no such access).
pub(crate) async fn case_of(
    state: &State,
    break_glass_id: &str,
) -> Result<Option<String>, CasesError> {
    Ok(
        sqlx::query_scalar("SELECT case_id FROM break_glass WHERE break_glass_id = $1")
            .bind(break_glass_id.trim())
            .fetch_optional(&state.pool)
            .await?,
    )
}

/// Records a supervisor's review, once.
pub(crate) async fn review(
    state: &State,
    meta: &MetadataMap,
    r: pb::ReviewBreakGlassRequest,
) -> Result<pb::BreakGlassAccess, CasesError> {
    let mut v = Violations::new();
    let outcome: Option<BreakGlassOutcome> = cv::required(&mut v, "outcome", r.outcome);
    if r.actor.trim().is_empty() {
        v.push("actor", Problem::Required);
    }
    check_text(&mut v, "actor", &r.actor, 64);
    check_text(&mut v, "notes", &r.notes, MAX_NARRATIVE);
    let (Some(outcome), true) = (outcome, v.is_empty()) else {
        return Err(CasesError::Invalid(v, himaya_proto::status::lang(meta)));
    };
    let row = sqlx::query_as::<_, AccessRow>(
        "UPDATE break_glass SET reviewed_by = $2, reviewed_at = now(), outcome = $3, review_notes = $4
          WHERE break_glass_id = $1 AND reviewed_at IS NULL RETURNING *",
    )
    .bind(r.break_glass_id.trim())
    .bind(r.actor.trim())
    .bind(outcome.as_str())
    .bind(Some(r.notes.trim()).filter(|n| !n.is_empty()))
    .fetch_optional(&state.pool)
    .await?;
    match row {
        Some(row) => Ok(row.into_access()?),
        None => {
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM break_glass WHERE break_glass_id = $1")
                    .bind(r.break_glass_id.trim())
                    .fetch_optional(&state.pool)
                    .await?;
            Err(match exists {
                Some(_) => CasesError::Precondition(msg!("break-glass-already-reviewed")),
                // The id is the caller's text: not repeated back.
                None => CasesError::NotFound(msg!("break-glass-not-found")),
            })
        }
    }
}
