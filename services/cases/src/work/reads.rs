//! Reading a case's history and the escalations raised.

use himaya_record::Priority;
use tonic::Code;

use super::*;

impl CaseWorkApi {
    pub(super) async fn history(
        &self,
        req: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::History>, Status> {
        let (meta, _, r) = req.into_parts();
        self.0.owner_of(&meta, &[&r.case_id]).await?;
        let case_id = CaseId::parse(&r.case_id).map_err(|_| {
            himaya_proto::status::status(Code::InvalidArgument, &msg!("case-id-invalid"))
        })?;
        let rows = sqlx::query_as::<_, (i64, String, String, chrono::DateTime<Utc>)>(
            "SELECT version, actor, change, at FROM case_history WHERE case_id = $1 ORDER BY id",
        )
        .bind(case_id.to_string())
        .fetch_all(&self.0.pool)
        .await
        .map_err(CasesError::from)?;
        if rows.is_empty() {
            return Err(CasesError::NotFound(msg!(
                "case-not-found",
                case_id = case_id.to_string()
            ))
            .into());
        }
        let entries = rows
            .into_iter()
            .map(|(version, actor, change, at)| pb::HistoryEntry {
                version,
                actor,
                change,
                at: at.to_rfc3339(),
            })
            .collect();
        Ok(Response::new(pb::History { entries }))
    }

    pub(super) async fn escalations(
        &self,
        req: Request<pb::ListEscalationsRequest>,
    ) -> Result<Response<pb::Escalations>, Status> {
        let (meta, _, r) = req.into_parts();
        let owner = self.0.owner(&meta)?;
        // A caseworker (not a supervisor) sees the escalations of their own cases.
        let only_of = himaya_proto::status::acting(&meta)
            .filter(|a| !a.has("supervisor"))
            .map(|a| a.person);
        let lang = himaya_proto::status::lang(&meta);
        let (_, agency) = self.0.calling_agency(&meta)?;
        let (everywhere, governorates) = crate::access::area(&agency);
        let since = if r.since.is_empty() {
            None
        } else {
            let t = chrono::DateTime::parse_from_rfc3339(&r.since).map_err(|_| {
                himaya_proto::status::status(
                    Code::InvalidArgument,
                    &msg!("case-escalations-since-invalid"),
                )
            })?;
            Some(t.with_timezone(&Utc))
        };
        let rows = sqlx::query_as::<_, EscalationRow>(
            "SELECT e.case_id, e.kind, e.due_at, e.raised_at, e.supervisor_id, e.ref_id, e.agency_id, e.reason,
                    coalesce(c.record->'referral'->>'priority', 'routine') AS priority
               FROM escalations e JOIN cases c ON c.case_id = e.case_id
              WHERE ($1::timestamptz IS NULL OR e.raised_at > $1)
                AND ($2 OR c.governorate = ANY($3))
                AND ($4::text IS NULL OR (c.caseworker_agency = $5 AND c.caseworker_id = $4))
              ORDER BY (c.record->'referral'->>'priority' = 'urgent') DESC, e.id LIMIT 1000",
        )
        .bind(since)
        .bind(everywhere)
        .bind(governorates)
        .bind(only_of)
        .bind(&owner)
        .fetch_all(&self.0.pool)
        .await
        .map_err(CasesError::from)?;
        let escalations = rows
            .into_iter()
            .map(|row| row.into_escalation(lang))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(CasesError::from)?;
        Ok(Response::new(pb::Escalations { escalations }))
    }
}

impl CaseWorkApi {
    /// The ministry's cases in its area, as summaries: one caseworker's open cases, or the
    /// unassigned queue; urgent first (a hotline escalation jumps the queue), then overdue,
    /// then by the next deadline.
    pub(super) async fn cases(
        &self,
        req: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::CaseList>, Status> {
        let (meta, _, r) = req.into_parts();
        let owner = self.0.owner(&meta)?;
        let (_, agency) = self.0.calling_agency(&meta)?;
        let (everywhere, governorates) = crate::access::area(&agency);
        let limit = match r.limit {
            0 => 50,
            n => i64::from(n.min(200)),
        };
        let caseworker = Some(r.caseworker_id.trim()).filter(|c| !c.is_empty());
        if caseworker.is_none() && !r.unassigned {
            return Err(himaya_proto::status::status(
                Code::InvalidArgument,
                &msg!("case-list-needs-caseworker"),
            ));
        }
        if let Some(a) = himaya_proto::status::acting(&meta) {
            // A person lists their own cases; a supervisor also their team's and the queue.
            let allowed = match caseworker {
                Some(c) if c == a.person => true,
                None => a.has("supervisor"),
                Some(c) => {
                    a.has("supervisor")
                        && sqlx::query_scalar::<_, bool>(
                            "SELECT EXISTS (SELECT 1 FROM staff
                                WHERE agency_id = $1 AND staff_id = $2 AND supervisor_id = $3)",
                        )
                        .bind(&owner)
                        .bind(c)
                        .bind(&a.person)
                        .fetch_one(&self.0.pool)
                        .await
                        .map_err(CasesError::from)?
                }
            };
            if !allowed {
                tracing::warn!(person = %a.person, "list refused: not the person's own cases or team");
                return Err(CasesError::PermissionDenied(msg!("case-list-not-yours")).into());
            }
        }
        let rows = sqlx::query_as::<_, SummaryRow>(
            "SELECT c.case_id, c.status, c.risk_level, c.priority, c.governorate, c.caseworker_id,
                    c.version, d.kind AS next_kind, d.due_at AS next_at
               FROM cases c
               LEFT JOIN LATERAL (SELECT kind, due_at FROM deadlines
                                   WHERE case_id = c.case_id AND state = 'open'
                                   ORDER BY due_at LIMIT 1) d ON true
              WHERE ($1 OR c.governorate = ANY($2))
                AND (($3::text IS NOT NULL AND c.caseworker_agency = $4 AND c.caseworker_id = $3
                      AND (c.status = 'registered' OR ($6 AND c.status = 'closed')))
                  OR ($3::text IS NULL AND c.caseworker_id IS NULL AND c.status IN ('referred', 'registered')))
              ORDER BY (c.priority = 'urgent') DESC, (d.due_at < now()) DESC NULLS LAST,
                       d.due_at NULLS LAST, c.updated_at DESC
              LIMIT $5",
        )
        .bind(everywhere)
        .bind(governorates)
        .bind(caseworker)
        .bind(&owner)
        .bind(limit)
        .bind(r.include_closed)
        .fetch_all(&self.0.pool)
        .await
        .map_err(CasesError::from)?;
        let now = Utc::now();
        let cases = rows
            .into_iter()
            .map(|row| row.into_summary(now))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(CasesError::from)?;
        Ok(Response::new(pb::CaseList { cases }))
    }
}

/// An escalation as read, with its case's priority; [`EscalationRow::into_escalation`]
/// checks its kind and priority.
#[derive(sqlx::FromRow)]
struct EscalationRow {
    case_id: String,
    kind: String,
    due_at: chrono::DateTime<Utc>,
    raised_at: chrono::DateTime<Utc>,
    supervisor_id: Option<String>,
    ref_id: Option<String>,
    agency_id: Option<String>,
    reason: Option<String>,
    priority: String,
}

impl EscalationRow {
    fn into_escalation(
        self,
        lang: himaya_proto::status::Lang,
    ) -> Result<pb::Escalation, sqlx::Error> {
        Ok(pb::Escalation {
            case_id: self.case_id,
            kind: wire_of::<DeadlineKind>("kind", &self.kind)?,
            due_at: self.due_at.to_rfc3339(),
            raised_at: self.raised_at.to_rfc3339(),
            supervisor_id: self.supervisor_id,
            priority: wire_of::<Priority>("priority", &self.priority)?,
            ref_id: self.ref_id,
            agency_id: self.agency_id,
            explanation: self.reason.as_deref().map(|r| explain(r, lang)),
            reason: self.reason,
        })
    }
}

/// A case as listed, with its next open deadline; [`SummaryRow::into_summary`] checks
/// its status, risk level, priority and deadline kind.
#[derive(sqlx::FromRow)]
struct SummaryRow {
    case_id: String,
    status: String,
    risk_level: String,
    priority: String,
    governorate: String,
    caseworker_id: Option<String>,
    version: i64,
    next_kind: Option<String>,
    next_at: Option<chrono::DateTime<Utc>>,
}

impl SummaryRow {
    fn into_summary(self, now: chrono::DateTime<Utc>) -> Result<pb::CaseSummary, sqlx::Error> {
        Ok(pb::CaseSummary {
            case_id: self.case_id,
            status: wire_of::<CaseStatus>("status", &self.status)?,
            risk_level: wire_of::<RiskLevel>("risk_level", &self.risk_level)?,
            priority: wire_of::<Priority>("priority", &self.priority)?,
            governorate: self.governorate,
            caseworker_id: self.caseworker_id,
            next_deadline_kind: wire_of_opt::<DeadlineKind>(
                "next_kind",
                self.next_kind.as_deref(),
            )?,
            next_deadline_at: self.next_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            overdue: self.next_at.is_some_and(|t| t < now),
            version: self.version,
        })
    }
}

/// Why a referral was not delivered, and what fixes it, in `lang`.
pub(crate) fn explain(reason: &str, lang: himaya_proto::status::Lang) -> String {
    let (en, ar) = himaya_settings::Obstacle::explain(reason);
    match lang {
        himaya_proto::status::Lang::Arabic => ar.to_owned(),
        himaya_proto::status::Lang::English => en.to_owned(),
    }
}
