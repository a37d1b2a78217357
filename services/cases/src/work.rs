//! `himaya.v1.CaseWork`: the case-owning ministry's moves on a case. Handlers are thin:
//! request → checked values (all violations at once) → one locked, versioned change.

use std::sync::Arc;

use chrono::{Duration, Utc};
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use himaya_record::lifecycle::{
    self, apply, on_registration, AcceptanceDecision, ClosureReason, DeadlineKind, Move,
    ReviewKind, RiskDeadlines,
};
use himaya_record::validate::{age_on, check_text, MAX_NARRATIVE};
use himaya_record::{AgencyType, CaseId, CaseRecord, CaseStatus, Problem, RiskLevel, Violations};
use himaya_settings::DeadlineSettings;
use sqlx::{PgConnection, Row};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::change::{close_deadlines, load_for_update, open_deadline, save};
use crate::intake::caller;
use crate::{CasesError, State};

pub struct CaseWorkApi(pub(crate) Arc<State>);

/// The common envelope of every change: who asks, which case, which version.
struct Envelope {
    lang: Lang,
    case_id: Option<CaseId>,
    v: Violations,
}

fn envelope(meta: &MetadataMap, case_id: &str, actor: &str) -> Envelope {
    let mut v = Violations::new();
    let case_id = CaseId::parse(case_id)
        .map_err(|_| {
            v.push(
                "case_id",
                Problem::InvalidCode {
                    expected: "a case id such as case_0190f1b2c3d47e8f9a0b1c2d3e4f5a6b",
                },
            )
        })
        .ok();
    if actor.trim().is_empty() {
        v.push("actor", Problem::Required);
    }
    check_text(&mut v, "actor", actor, 64);
    Envelope {
        lang: Lang::of(meta),
        case_id,
        v,
    }
}

impl Envelope {
    /// The case id once every violation is known to be absent.
    fn finish(self) -> Result<CaseId, CasesError> {
        match (self.case_id, self.v.is_empty()) {
            (Some(id), true) => Ok(id),
            _ => Err(CasesError::Invalid(self.v, self.lang)),
        }
    }
}

fn choose<T: Copy + std::fmt::Display>(
    v: &mut Violations,
    field: &str,
    raw: &str,
    all: &[T],
    parse: fn(&str) -> Option<T>,
) -> Option<T> {
    let out = parse(raw.trim());
    if out.is_none() {
        let names: Vec<String> = all.iter().map(ToString::to_string).collect();
        v.push(
            field,
            Problem::NotChosen {
                choices: names.join(", "),
            },
        );
    }
    out
}

fn required_text(v: &mut Violations, field: &str, text: &str) {
    if text.trim().is_empty() {
        v.push(field, Problem::Required);
    }
    check_text(v, field, text, MAX_NARRATIVE);
}

fn illegal(e: lifecycle::IllegalMove) -> CasesError {
    CasesError::precondition(&e, e.arabic())
}

fn deadlines(s: &DeadlineSettings) -> RiskDeadlines {
    RiskDeadlines {
        assign_within: Duration::seconds(s.assign_within_secs),
        first_contact_within: Duration::seconds(s.first_contact_within_secs),
        review_every: Duration::seconds(s.review_every_secs),
    }
}

fn change_reply(r: &CaseRecord, note: Option<String>) -> Response<pb::CaseChange> {
    Response::new(pb::CaseChange {
        case_id: r.case_id.to_string(),
        version: r.version,
        status: r.status.as_str().into(),
        note,
    })
}

impl CaseWorkApi {
    /// The calling agency, which must own cases (social affairs).
    fn owner(&self, meta: &MetadataMap) -> Result<String, CasesError> {
        let id = caller(meta, self.0.settings.grpc.dev_identity).ok_or_else(|| {
            CasesError::Unauthenticated(
                "say which agency is calling (x-himaya-agency, or --as)".into(),
            )
        })?;
        match self.0.settings.agencies.get(&id) {
            Some(a) if a.agency_type == AgencyType::SocialAffairs => Ok(id),
            _ => Err(CasesError::PermissionDenied(format!(
                "`{id}` is not a case-owning (social affairs) agency"
            ))),
        }
    }

    fn risk_deadlines(&self, risk: RiskLevel) -> RiskDeadlines {
        let d = &self.0.settings.lifecycle.deadlines;
        deadlines(match risk {
            RiskLevel::High => &d.high,
            RiskLevel::Medium => &d.medium,
            RiskLevel::Low => &d.low,
        })
    }

    async fn decide(
        &self,
        meta: &MetadataMap,
        r: pb::DecideAcceptanceRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.owner(meta)?;
        let l = &self.0.settings.lifecycle;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        let decision = choose(
            &mut e.v,
            "decision",
            &r.decision,
            AcceptanceDecision::ALL,
            AcceptanceDecision::parse,
        );
        let known = |c: &String| {
            l.vulnerability_criteria.contains(c) || l.material_need_criteria.contains(c)
        };
        for (i, c) in r.vulnerability_criteria.iter().enumerate() {
            if !known(c) {
                let all: Vec<&str> = l
                    .vulnerability_criteria
                    .iter()
                    .chain(&l.material_need_criteria)
                    .map(String::as_str)
                    .collect();
                e.v.push(
                    format!("vulnerability_criteria[{i}]"),
                    Problem::NotChosen {
                        choices: all.join(", "),
                    },
                );
            }
        }
        let reason = r.reason.as_deref().map(str::trim).filter(|s| !s.is_empty());
        match decision {
            Some(AcceptanceDecision::Register) if r.vulnerability_criteria.is_empty() => {
                e.v.push("vulnerability_criteria", Problem::AtLeastOne)
            }
            Some(AcceptanceDecision::ReferOn | AcceptanceDecision::Decline) if reason.is_none() => {
                e.v.push("reason", Problem::Required)
            }
            _ => {}
        }
        if decision == Some(AcceptanceDecision::ReferOn)
            && !r
                .referred_on_to
                .as_ref()
                .is_some_and(|a| self.0.settings.agencies.contains_key(a))
        {
            e.v.push(
                "referred_on_to",
                Problem::InvalidCode {
                    expected: "an agency id from the directory",
                },
            );
        }
        if let Some(text) = reason {
            check_text(&mut e.v, "reason", text, MAX_NARRATIVE);
        }
        let case_id = e.finish()?;
        let Some(mut decision) = decision else {
            return Err(CasesError::Precondition("no decision".into()));
        };
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        let (mut reason, mut to, mut note) =
            (reason.map(str::to_owned), r.referred_on_to.clone(), None);
        // Poverty or material need alone never registers a case: refer to relief instead.
        if decision == AcceptanceDecision::Register
            && r.vulnerability_criteria
                .iter()
                .all(|c| l.material_need_criteria.contains(c))
        {
            decision = AcceptanceDecision::ReferOn;
            reason = Some(lifecycle::MATERIAL_NEED_ONLY.into());
            to = Some(l.relief_agency.clone());
            note = Some(format!(
                "not registered: {}; referred on to {}",
                lifecycle::MATERIAL_NEED_ONLY,
                l.relief_agency
            ));
        }
        rec.status = apply(rec.status, decision.into()).map_err(illegal)?;
        rec.acceptance = Some(lifecycle::Acceptance {
            decision,
            vulnerability_criteria: r.vulnerability_criteria.clone(),
            reason,
            referred_on_to: if decision == AcceptanceDecision::ReferOn {
                to
            } else {
                None
            },
            decided_by: r.actor.clone(),
            decided_at: now,
        });
        if rec.status == CaseStatus::Registered {
            for (kind, due) in on_registration(
                now,
                &self.risk_deadlines(rec.risk_level),
                rec.child.date_of_birth,
            ) {
                open_deadline(&mut tx, &case_id, kind, due).await?;
            }
        }
        let change = rec.status.as_str();
        save(&mut tx, &mut rec, &r.actor, change, now).await?;
        tx.commit().await?;
        tracing::info!(case_id = %case_id, status = %rec.status, "acceptance decided");
        Ok(change_reply(&rec, note))
    }

    async fn add_staff(
        &self,
        meta: &MetadataMap,
        r: pb::AddStaffRequest,
    ) -> Result<Response<pb::StaffMember>, CasesError> {
        let agency = self.owner(meta)?;
        let lang = Lang::of(meta);
        let mut v = Violations::new();
        let id_ok = !r.staff_id.is_empty()
            && r.staff_id.len() <= 64
            && r.staff_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !id_ok {
            v.push(
                "staff_id",
                Problem::InvalidCode {
                    expected: "1-64 characters of letters, digits and -",
                },
            );
        }
        let role = r.role.trim();
        if !["caseworker", "supervisor"].contains(&role) {
            v.push(
                "role",
                Problem::NotChosen {
                    choices: "caseworker, supervisor".into(),
                },
            );
        }
        if role == "caseworker" && r.supervisor_id.is_none() {
            v.push("supervisor_id", Problem::Required);
        }
        if !v.is_empty() {
            return Err(CasesError::Invalid(v, lang));
        }
        let supervisor = if role == "caseworker" {
            r.supervisor_id.clone()
        } else {
            None
        };
        let mut tx = self.0.pool.begin().await?;
        if let Some(sup) = &supervisor {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                .bind(sup)
                .execute(&mut *tx)
                .await?;
            let found: Option<String> = sqlx::query_scalar(
                "SELECT agency_id FROM staff WHERE staff_id = $1 AND role = 'supervisor'",
            )
            .bind(sup)
            .fetch_optional(&mut *tx)
            .await?;
            if found.as_deref() != Some(agency.as_str()) {
                return Err(CasesError::precondition(
                    format!("`{sup}` is not a supervisor of {agency}"),
                    format!("`{sup}` ليس مشرفًا في {agency}"),
                ));
            }
            let max = self.0.settings.lifecycle.max_caseworkers_per_supervisor;
            let team: i64 =
                sqlx::query_scalar("SELECT count(*) FROM staff WHERE supervisor_id = $1")
                    .bind(sup)
                    .fetch_one(&mut *tx)
                    .await?;
            if team >= max {
                let room = with_room(&mut tx, &agency, "supervisor", max).await?;
                return Err(CasesError::precondition(
                    format!("supervisor {sup} already oversees {team} caseworkers (the limit is {max}); supervisors with room: {room}"),
                    format!("المشرف {sup} يشرف على {team} أخصائيين (الحد الأقصى {max})؛ مشرفون لديهم متسع: {room}"),
                ));
            }
        }
        let inserted = sqlx::query("INSERT INTO staff (staff_id, agency_id, role, supervisor_id) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING")
            .bind(&r.staff_id)
            .bind(&agency)
            .bind(role)
            .bind(&supervisor)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted == 0 {
            return Err(CasesError::precondition(
                format!("staff member `{}` already exists", r.staff_id),
                format!("الموظف `{}` مسجل من قبل", r.staff_id),
            ));
        }
        tx.commit().await?;
        Ok(Response::new(pb::StaffMember {
            staff_id: r.staff_id,
            agency_id: agency,
            role: role.into(),
            supervisor_id: supervisor,
        }))
    }

    async fn assign(
        &self,
        meta: &MetadataMap,
        r: pb::AssignCaseRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        let agency = self.owner(meta)?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        if r.caseworker_id.trim().is_empty() {
            e.v.push("caseworker_id", Problem::Required);
        }
        let case_id = e.finish()?;
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        // Serialise assignments to one caseworker so two cannot both take the last place.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
            .bind(&r.caseworker_id)
            .execute(&mut *tx)
            .await?;
        let sup: Option<Option<String>> =
            sqlx::query_scalar("SELECT supervisor_id FROM staff WHERE staff_id = $1 AND agency_id = $2 AND role = 'caseworker'")
                .bind(&r.caseworker_id)
                .bind(&agency)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(Some(supervisor_id)) = sup else {
            return Err(CasesError::precondition(
                format!("`{}` is not a caseworker of {agency}", r.caseworker_id),
                format!("`{}` ليس أخصائي حالة في {agency}", r.caseworker_id),
            ));
        };
        let max = self.0.settings.lifecycle.max_cases_per_caseworker;
        let open: i64 = sqlx::query_scalar("SELECT count(*) FROM cases WHERE caseworker_id = $1 AND status = 'registered' AND case_id <> $2")
            .bind(&r.caseworker_id)
            .bind(case_id.to_string())
            .fetch_one(&mut *tx)
            .await?;
        if open >= max {
            let room = with_room(&mut tx, &agency, "caseworker", max).await?;
            return Err(CasesError::precondition(
                format!(
                    "caseworker {} already has {open} open cases (the limit is {max}); caseworkers with room: {room}",
                    r.caseworker_id
                ),
                format!(
                    "لدى الأخصائي {} {open} حالات مفتوحة (الحد الأقصى {max})؛ أخصائيون لديهم متسع: {room}",
                    r.caseworker_id
                ),
            ));
        }
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        apply(rec.status, Move::Assign).map_err(illegal)?;
        let first = rec.assignment.is_none();
        rec.assignment = Some(lifecycle::Assignment {
            caseworker_id: r.caseworker_id.clone(),
            supervisor_id,
            assigned_at: now,
        });
        close_deadlines(&mut tx, &case_id, &[DeadlineKind::Assignment], "met").await?;
        if first {
            let within = self.risk_deadlines(rec.risk_level).first_contact_within;
            open_deadline(&mut tx, &case_id, DeadlineKind::FirstContact, now + within).await?;
        }
        save(
            &mut tx,
            &mut rec,
            &r.actor,
            &format!("assigned: {}", r.caseworker_id),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(change_reply(&rec, None))
    }

    async fn review(
        &self,
        meta: &MetadataMap,
        r: pb::RecordReviewRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.owner(meta)?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        let kind = choose(
            &mut e.v,
            "kind",
            &r.kind,
            ReviewKind::ALL,
            ReviewKind::parse,
        );
        required_text(&mut e.v, "findings", &r.findings);
        let case_id = e.finish()?;
        let kind = kind.unwrap_or(ReviewKind::Phone);
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        apply(rec.status, Move::Review).map_err(illegal)?;
        if rec.assignment.is_none() {
            return Err(CasesError::precondition(
                "assign a caseworker before recording reviews",
                "أسند الحالة إلى أخصائي قبل تسجيل المراجعات",
            ));
        }
        sqlx::query("INSERT INTO reviews (case_id, kind, child_seen, findings, reviewed_by) VALUES ($1, $2, $3, $4, $5)")
            .bind(case_id.to_string())
            .bind(kind.as_str())
            .bind(r.child_seen)
            .bind(r.findings.trim())
            .bind(&r.actor)
            .execute(&mut *tx)
            .await?;
        if r.child_seen {
            close_deadlines(&mut tx, &case_id, &[DeadlineKind::FirstContact], "met").await?;
        }
        let every = self.risk_deadlines(rec.risk_level).review_every;
        close_deadlines(&mut tx, &case_id, &[DeadlineKind::Review], "met").await?;
        open_deadline(&mut tx, &case_id, DeadlineKind::Review, now + every).await?;
        save(
            &mut tx,
            &mut rec,
            &r.actor,
            &format!("reviewed: {kind}"),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(change_reply(
            &rec,
            Some(format!("next review due {}", (now + every).to_rfc3339())),
        ))
    }

    async fn close(
        &self,
        meta: &MetadataMap,
        r: pb::CloseCaseRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.owner(meta)?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        let reason = choose(
            &mut e.v,
            "reason",
            &r.reason,
            ClosureReason::ALL,
            ClosureReason::parse,
        );
        if r.parents_consulted.is_none() {
            e.v.push("parents_consulted", Problem::Required);
        }
        required_text(&mut e.v, "final_evaluation", &r.final_evaluation);
        required_text(&mut e.v, "recommendations", &r.recommendations);
        let case_id = e.finish()?;
        let (Some(reason), Some(consulted)) = (reason, r.parents_consulted) else {
            return Err(CasesError::Precondition("incomplete closure".into()));
        };
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        rec.status = apply(rec.status, Move::Close).map_err(illegal)?;
        closure_rules(&mut tx, &rec, reason, consulted, now).await?;
        rec.closure = Some(lifecycle::Closure {
            reason,
            parents_consulted: consulted,
            final_evaluation: r.final_evaluation.trim().into(),
            recommendations: r.recommendations.trim().into(),
            closed_by: r.actor.clone(),
            closed_at: now,
        });
        close_deadlines(&mut tx, &case_id, &[], "cancelled").await?;
        save(
            &mut tx,
            &mut rec,
            &r.actor,
            &format!("closed: {reason}"),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(change_reply(&rec, None))
    }

    async fn reopen(
        &self,
        meta: &MetadataMap,
        r: pb::ReopenCaseRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.owner(meta)?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        required_text(&mut e.v, "reason", &r.reason);
        let case_id = e.finish()?;
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        let mut rec = load_for_update(&mut tx, &case_id, r.expected_version).await?;
        rec.status = apply(rec.status, Move::Reopen).map_err(illegal)?;
        // The closure stays in the history; the record shows the case open again.
        rec.closure = None;
        let d = self.risk_deadlines(rec.risk_level);
        if rec.assignment.is_some() {
            open_deadline(
                &mut tx,
                &case_id,
                DeadlineKind::Review,
                now + d.review_every,
            )
            .await?;
        } else {
            open_deadline(
                &mut tx,
                &case_id,
                DeadlineKind::Assignment,
                now + d.assign_within,
            )
            .await?;
        }
        save(
            &mut tx,
            &mut rec,
            &r.actor,
            &format!("reopened: {}", r.reason.trim()),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(change_reply(&rec, None))
    }
}

/// The seeds' conditions for each closure reason.
async fn closure_rules(
    tx: &mut PgConnection,
    rec: &CaseRecord,
    reason: ClosureReason,
    consulted: bool,
    now: chrono::DateTime<Utc>,
) -> Result<(), CasesError> {
    match reason {
        ClosureReason::NeedEnded => {
            if !consulted {
                return Err(CasesError::precondition(
                    "closing because the need has ended requires consulting the parents first",
                    "الإغلاق لانتهاء الحاجة يتطلب استشارة الوالدين أولًا",
                ));
            }
            let reviews: i64 =
                sqlx::query_scalar("SELECT count(*) FROM reviews WHERE case_id = $1")
                    .bind(rec.case_id.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
            if reviews == 0 {
                return Err(CasesError::precondition(
                    "the need can only be found ended after at least one review",
                    "لا يمكن تقرير انتهاء الحاجة إلا بعد مراجعة واحدة على الأقل",
                ));
            }
        }
        ClosureReason::TurnedEighteen => {
            if let Some(dob) = rec.child.date_of_birth {
                if age_on(dob, now.date_naive()) < 18 {
                    return Err(CasesError::precondition(
                        "the child's date of birth says they are not 18 yet",
                        "تاريخ ميلاد الطفل يدل على أنه لم يبلغ 18 سنة بعد",
                    ));
                }
            }
        }
        ClosureReason::Death | ClosureReason::MovedOutOfReach | ClosureReason::ContactLost => {}
    }
    Ok(())
}

/// Staff of `role` in `agency` with fewer than `max` open cases (caseworkers) or team
/// members (supervisors): "sw-2 (3), sw-5 (10)", or "none".
async fn with_room(
    tx: &mut PgConnection,
    agency: &str,
    role: &str,
    max: i64,
) -> Result<String, CasesError> {
    let sql = if role == "caseworker" {
        "SELECT s.staff_id, count(c.case_id) AS n FROM staff s
           LEFT JOIN cases c ON c.caseworker_id = s.staff_id AND c.status = 'registered'
          WHERE s.agency_id = $1 AND s.role = 'caseworker'
          GROUP BY s.staff_id HAVING count(c.case_id) < $2 ORDER BY n, s.staff_id LIMIT 5"
    } else {
        "SELECT s.staff_id, count(w.staff_id) AS n FROM staff s
           LEFT JOIN staff w ON w.supervisor_id = s.staff_id
          WHERE s.agency_id = $1 AND s.role = 'supervisor'
          GROUP BY s.staff_id HAVING count(w.staff_id) < $2 ORDER BY n, s.staff_id LIMIT 5"
    };
    let rows = sqlx::query(sql)
        .bind(agency)
        .bind(max)
        .fetch_all(&mut *tx)
        .await?;
    let names: Vec<String> = rows
        .iter()
        .map(|r| {
            Ok(format!(
                "{} ({})",
                r.try_get::<String, _>("staff_id")?,
                r.try_get::<i64, _>("n")?
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    Ok(if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    })
}

#[tonic::async_trait]
impl pb::case_work_server::CaseWork for CaseWorkApi {
    async fn find_duplicates(
        &self,
        req: Request<pb::FindDuplicatesRequest>,
    ) -> Result<Response<pb::Duplicates>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(Response::new(
            CaseWorkApi::find_duplicates(self, &meta, r).await?,
        ))
    }

    async fn link_cases(
        &self,
        req: Request<pb::LinkCasesRequest>,
    ) -> Result<Response<pb::LinkCasesResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(Response::new(
            CaseWorkApi::link_cases(self, &meta, r).await?,
        ))
    }

    async fn merge_cases(
        &self,
        req: Request<pb::MergeCasesRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(self.merge_cases(&meta, r).await?)
    }

    async fn decide_acceptance(
        &self,
        req: Request<pb::DecideAcceptanceRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(self.decide(&meta, r).await?)
    }

    async fn add_staff(
        &self,
        req: Request<pb::AddStaffRequest>,
    ) -> Result<Response<pb::StaffMember>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(CaseWorkApi::add_staff(self, &meta, r).await?)
    }

    async fn assign_case(
        &self,
        req: Request<pb::AssignCaseRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(self.assign(&meta, r).await?)
    }

    async fn record_review(
        &self,
        req: Request<pb::RecordReviewRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(self.review(&meta, r).await?)
    }

    async fn close_case(
        &self,
        req: Request<pb::CloseCaseRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(self.close(&meta, r).await?)
    }

    async fn reopen_case(
        &self,
        req: Request<pb::ReopenCaseRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(self.reopen(&meta, r).await?)
    }

    async fn get_history(
        &self,
        req: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::History>, Status> {
        let (meta, _, r) = req.into_parts();
        self.owner(&meta)?;
        let case_id = CaseId::parse(&r.case_id)
            .map_err(|e| Status::invalid_argument(format!("case_id: {e}")))?;
        let rows = sqlx::query(
            "SELECT version, actor, change, at FROM case_history WHERE case_id = $1 ORDER BY id",
        )
        .bind(case_id.to_string())
        .fetch_all(&self.0.pool)
        .await
        .map_err(CasesError::from)?;
        if rows.is_empty() {
            return Err(CasesError::NotFound(format!("no case {case_id}")).into());
        }
        let entries = rows
            .iter()
            .map(|row| {
                Ok(pb::HistoryEntry {
                    version: row.try_get("version")?,
                    actor: row.try_get("actor")?,
                    change: row.try_get("change")?,
                    at: row.try_get::<chrono::DateTime<Utc>, _>("at")?.to_rfc3339(),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(CasesError::from)?;
        Ok(Response::new(pb::History { entries }))
    }

    async fn list_escalations(
        &self,
        req: Request<pb::ListEscalationsRequest>,
    ) -> Result<Response<pb::Escalations>, Status> {
        let (meta, _, r) = req.into_parts();
        self.owner(&meta)?;
        let since = if r.since.is_empty() {
            None
        } else {
            let t = chrono::DateTime::parse_from_rfc3339(&r.since).map_err(|_| {
                Status::invalid_argument("since: not an RFC 3339 time such as 2026-11-22T09:00:00Z")
            })?;
            Some(t.with_timezone(&Utc))
        };
        let rows = sqlx::query(
            "SELECT case_id, kind, due_at, raised_at, supervisor_id FROM escalations
              WHERE $1::timestamptz IS NULL OR raised_at > $1 ORDER BY id LIMIT 1000",
        )
        .bind(since)
        .fetch_all(&self.0.pool)
        .await
        .map_err(CasesError::from)?;
        let escalations = rows
            .iter()
            .map(|row| {
                Ok(pb::Escalation {
                    case_id: row.try_get("case_id")?,
                    kind: row.try_get("kind")?,
                    due_at: row
                        .try_get::<chrono::DateTime<Utc>, _>("due_at")?
                        .to_rfc3339(),
                    raised_at: row
                        .try_get::<chrono::DateTime<Utc>, _>("raised_at")?
                        .to_rfc3339(),
                    supervisor_id: row.try_get("supervisor_id")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(CasesError::from)?;
        Ok(Response::new(pb::Escalations { escalations }))
    }
}

/// Duplicates: find, link, merge.
impl CaseWorkApi {
    pub(crate) async fn find_duplicates(
        &self,
        meta: &MetadataMap,
        r: pb::FindDuplicatesRequest,
    ) -> Result<pb::Duplicates, CasesError> {
        self.owner(meta)?;
        let e = envelope(meta, &r.case_id, "finder");
        let case_id = e.finish()?;
        let rec = crate::db::load_case(&self.0.pool, &case_id)
            .await?
            .ok_or_else(|| CasesError::NotFound(format!("no case {case_id}")))?;
        let min = if r.min_score > 0.0 {
            r.min_score.min(1.0)
        } else {
            0.6
        };
        let found = crate::duplicates::candidates(
            &self.0.pool,
            &crate::duplicates::key_of(&rec),
            Some(&case_id.to_string()),
            min,
            10,
        )
        .await?;
        let mut candidates = Vec::with_capacity(found.len());
        for (id, score) in found {
            let status: Option<String> =
                sqlx::query_scalar("SELECT status FROM cases WHERE case_id = $1")
                    .bind(&id)
                    .fetch_optional(&self.0.pool)
                    .await?;
            candidates.push(pb::DuplicateCandidate {
                case_id: id,
                score,
                status: status.unwrap_or_default(),
            });
        }
        tracing::info!(case_id = %case_id, candidates = candidates.len(), "duplicates searched");
        Ok(pb::Duplicates { candidates })
    }

    pub(crate) async fn link_cases(
        &self,
        meta: &MetadataMap,
        r: pb::LinkCasesRequest,
    ) -> Result<pb::LinkCasesResponse, CasesError> {
        self.owner(meta)?;
        let mut e = envelope(meta, &r.case_id, &r.actor);
        let other = CaseId::parse(&r.other_case_id).ok();
        if other.is_none() || r.other_case_id == r.case_id {
            e.v.push(
                "other_case_id",
                Problem::InvalidCode {
                    expected: "the id of another case",
                },
            );
        }
        if !["same_child", "sibling"].contains(&r.kind.as_str()) {
            e.v.push(
                "kind",
                Problem::NotChosen {
                    choices: "same_child, sibling".into(),
                },
            );
        }
        let case_id = e.finish()?;
        let Some(other) = other else {
            return Err(CasesError::NotFound("no other case".into()));
        };
        let mut tx = self.0.pool.begin().await?;
        for id in [&case_id, &other] {
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT version FROM cases WHERE case_id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Err(CasesError::NotFound(format!("no case {id}")));
            }
        }
        let created = crate::duplicates::link(&mut tx, &case_id, &other, &r.kind, &r.actor).await?;
        tx.commit().await?;
        Ok(pb::LinkCasesResponse { created })
    }

    pub(crate) async fn merge_cases(
        &self,
        meta: &MetadataMap,
        r: pb::MergeCasesRequest,
    ) -> Result<Response<pb::CaseChange>, CasesError> {
        self.owner(meta)?;
        let mut e = envelope(meta, &r.keep_case_id, &r.actor);
        let merged_id = CaseId::parse(&r.merge_case_id).ok();
        if merged_id.is_none() || r.merge_case_id == r.keep_case_id {
            e.v.push(
                "merge_case_id",
                Problem::InvalidCode {
                    expected: "the id of another case",
                },
            );
        }
        let keep_id = e.finish()?;
        let Some(merged_id) = merged_id else {
            return Err(CasesError::NotFound("no case to merge".into()));
        };
        let now = Utc::now();
        let mut tx = self.0.pool.begin().await?;
        // Lock in id order so two opposite merges cannot deadlock.
        let (keep, mut merged) = if keep_id.to_string() < merged_id.to_string() {
            let k = load_for_update(&mut tx, &keep_id, r.keep_version).await?;
            (
                k,
                load_for_update(&mut tx, &merged_id, r.merge_version).await?,
            )
        } else {
            let m = load_for_update(&mut tx, &merged_id, r.merge_version).await?;
            (load_for_update(&mut tx, &keep_id, r.keep_version).await?, m)
        };
        let mut keep = keep;
        if keep.status == CaseStatus::Merged {
            return Err(CasesError::precondition(
                format!(
                    "case {keep_id} was itself merged into {}",
                    keep.merged_into.as_deref().unwrap_or("another case")
                ),
                format!("الحالة {keep_id} مدموجة بالفعل في حالة أخرى"),
            ));
        }
        merged.status = apply(merged.status, Move::Merge).map_err(illegal)?;
        merged.merged_into = Some(keep_id.to_string());
        close_deadlines(&mut tx, &merged_id, &[], "cancelled").await?;
        save(
            &mut tx,
            &mut merged,
            &r.actor,
            &format!("merged into {keep_id}"),
            now,
        )
        .await?;
        save(
            &mut tx,
            &mut keep,
            &r.actor,
            &format!("merged: {merged_id} folded into this case"),
            now,
        )
        .await?;
        crate::duplicates::fold_history(&mut tx, &keep_id, &merged_id, keep.version).await?;
        tx.commit().await?;
        tracing::info!(keep = %keep_id, merged = %merged_id, "cases merged");
        Ok(change_reply(
            &keep,
            Some(format!("{merged_id} merged into this case")),
        ))
    }
}
