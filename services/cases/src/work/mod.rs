//! `himaya.v1.CaseWork`: the case-owning ministry's moves on a case. Handlers are thin:
//! request → checked values (all violations at once) → one locked, versioned change.

mod acceptance;
mod closure;
mod consent;
mod indicators;
mod merging;
mod plan;
mod reads;
mod referrals;
mod staff;

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

use crate::access::Need;
use crate::change::{close_deadlines, load_for_update, open_deadline, save};
use crate::{CasesError, State};

pub(crate) use acceptance::referral_on;
pub(crate) use reads::explain;
pub use referrals::ServiceReferralsApi;

pub struct CaseWorkApi(pub(crate) Arc<State>);

/// A request that names who acts (`actor`).
pub(crate) trait Acted {
    fn actor_mut(&mut self) -> &mut String;
}

macro_rules! acted_requests {
    ($($t:ident),* $(,)?) => {
        $(impl Acted for pb::$t {
            fn actor_mut(&mut self) -> &mut String {
                &mut self.actor
            }
        })*
    };
}

acted_requests!(
    AcknowledgeNoticeRequest,
    BreakGlassRequest,
    ReviewBreakGlassRequest,
    GrantConsentRequest,
    AmendConsentRequest,
    WithdrawConsentRequest,
    LinkCasesRequest,
    MergeCasesRequest,
    DecideAcceptanceRequest,
    AssignCaseRequest,
    RecordReviewRequest,
    RecordAssessmentRequest,
    SetPlanRequest,
    CompleteActionRequest,
    CloseCaseRequest,
    ReopenCaseRequest,
    CreateServiceReferralRequest,
    UpdateServiceReferralRequest,
);

/// A request's metadata and message, its `actor` replaced by the proven person when the
/// web front acts for one: what a person did is recorded under their id, whatever the
/// form sent. An agency's own system still names its staff reference as it sees fit.
pub(crate) fn acted<T: Acted>(req: Request<T>) -> (MetadataMap, T) {
    let (meta, _, mut r) = req.into_parts();
    if let Some(person) = himaya_proto::status::person(&meta) {
        *r.actor_mut() = person;
    }
    (meta, r)
}

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
        warnings: Vec::new(),
    })
}

impl CaseWorkApi {
    /// The calling agency, which must own cases (social affairs).
    fn owner(&self, meta: &MetadataMap) -> Result<String, CasesError> {
        let (id, agency) = self.0.calling_agency(meta)?;
        if agency.agency_type == AgencyType::SocialAffairs {
            Ok(id)
        } else {
            Err(CasesError::PermissionDenied(format!(
                "`{id}` is not a case-owning (social affairs) agency"
            )))
        }
    }

    /// The calling agency, which must own every case named (a social affairs agency whose
    /// area the case is in: `crate::access`). Checked before the request's other fields,
    /// so a caller learns nothing about a case that is not its own; an id that does not
    /// parse is left to the handler's validation.
    async fn owner_of(&self, meta: &MetadataMap, case_ids: &[&str]) -> Result<String, CasesError> {
        let id = self.owner(meta)?;
        let (_, agency) = self.0.calling_agency(meta)?;
        let acting = himaya_proto::status::acting(meta);
        for raw in case_ids {
            if let Ok(case_id) = CaseId::parse(raw.trim()) {
                self.0
                    .require_case(
                        acting.as_ref(),
                        &id,
                        agency,
                        &case_id,
                        Need::Owner,
                        "grpc_call",
                        himaya_record::Purpose::ServiceProvision,
                    )
                    .await?;
            }
        }
        Ok(id)
    }

    fn risk_deadlines(&self, risk: RiskLevel) -> RiskDeadlines {
        let d = &self.0.settings.lifecycle.deadlines;
        deadlines(match risk {
            RiskLevel::High => &d.high,
            RiskLevel::Medium => &d.medium,
            RiskLevel::Low => &d.low,
        })
    }
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
        let (meta, r) = crate::work::acted(req);
        Ok(Response::new(
            CaseWorkApi::link_cases(self, &meta, r).await?,
        ))
    }

    async fn merge_cases(
        &self,
        req: Request<pb::MergeCasesRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = crate::work::acted(req);
        Ok(self.merge_cases(&meta, r).await?)
    }

    async fn decide_acceptance(
        &self,
        req: Request<pb::DecideAcceptanceRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = crate::work::acted(req);
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
        let (meta, r) = crate::work::acted(req);
        Ok(self.assign(&meta, r).await?)
    }

    async fn record_review(
        &self,
        req: Request<pb::RecordReviewRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = crate::work::acted(req);
        Ok(self.review(&meta, r).await?)
    }

    async fn close_case(
        &self,
        req: Request<pb::CloseCaseRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = crate::work::acted(req);
        Ok(self.close(&meta, r).await?)
    }

    async fn reopen_case(
        &self,
        req: Request<pb::ReopenCaseRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = crate::work::acted(req);
        Ok(self.reopen(&meta, r).await?)
    }

    async fn get_history(
        &self,
        req: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::History>, Status> {
        self.history(req).await
    }

    async fn record_assessment(
        &self,
        req: Request<pb::RecordAssessmentRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = crate::work::acted(req);
        Ok(self.assess(&meta, r).await?)
    }

    async fn set_plan(
        &self,
        req: Request<pb::SetPlanRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = crate::work::acted(req);
        Ok(CaseWorkApi::set_plan(self, &meta, r).await?)
    }

    async fn complete_action(
        &self,
        req: Request<pb::CompleteActionRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = crate::work::acted(req);
        Ok(CaseWorkApi::complete_action(self, &meta, r).await?)
    }

    async fn grant_consent(
        &self,
        req: Request<pb::GrantConsentRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = crate::work::acted(req);
        Ok(CaseWorkApi::grant_consent(self, &meta, r).await?)
    }

    async fn amend_consent(
        &self,
        req: Request<pb::AmendConsentRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = crate::work::acted(req);
        Ok(CaseWorkApi::amend_consent(self, &meta, r).await?)
    }

    async fn withdraw_consent(
        &self,
        req: Request<pb::WithdrawConsentRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = crate::work::acted(req);
        Ok(CaseWorkApi::withdraw_consent(self, &meta, r).await?)
    }

    async fn list_consents(
        &self,
        req: Request<pb::ListConsentsRequest>,
    ) -> Result<Response<pb::ConsentList>, Status> {
        let (meta, _, r) = req.into_parts();
        Ok(Response::new(
            CaseWorkApi::list_consents(self, &meta, r).await?,
        ))
    }

    async fn list_break_glass(
        &self,
        req: Request<pb::ListBreakGlassRequest>,
    ) -> Result<Response<pb::BreakGlassList>, Status> {
        let (meta, _, r) = req.into_parts();
        self.owner(&meta)?;
        let (_, reviewer) = self.0.calling_agency(&meta)?;
        let accesses = crate::break_glass::list(&self.0, r.all, reviewer).await?;
        Ok(Response::new(pb::BreakGlassList { accesses }))
    }

    async fn review_break_glass(
        &self,
        req: Request<pb::ReviewBreakGlassRequest>,
    ) -> Result<Response<pb::BreakGlassAccess>, Status> {
        let (meta, r) = crate::work::acted(req);
        let id = self.owner(&meta)?;
        let (_, reviewer) = self.0.calling_agency(&meta)?;
        let case_id = crate::break_glass::case_of(&self.0, &r.break_glass_id).await?;
        if let Some(case_id) = case_id.as_deref().and_then(|c| CaseId::parse(c).ok()) {
            let allowed = self
                .0
                .allowed_on_case(
                    himaya_proto::status::acting(&meta).as_ref(),
                    &id,
                    reviewer,
                    &case_id,
                    Need::Owner,
                    "grpc_call",
                    himaya_record::Purpose::ServiceProvision,
                )
                .await?;
            if !allowed {
                // Named by the access, never by its case.
                return Err(CasesError::PermissionDenied(format!(
                    "break-glass access {} is not in the area of `{id}` — ليس ضمن نطاق هذه الجهة",
                    r.break_glass_id.trim()
                ))
                .into());
            }
        }
        Ok(Response::new(
            crate::break_glass::review(&self.0, &meta, r).await?,
        ))
    }

    async fn get_indicators(
        &self,
        req: Request<pb::GetIndicatorsRequest>,
    ) -> Result<Response<pb::Indicators>, Status> {
        self.indicators(req).await
    }

    async fn list_escalations(
        &self,
        req: Request<pb::ListEscalationsRequest>,
    ) -> Result<Response<pb::Escalations>, Status> {
        self.escalations(req).await
    }

    async fn list_cases(
        &self,
        req: Request<pb::ListCasesRequest>,
    ) -> Result<Response<pb::CaseList>, Status> {
        self.cases(req).await
    }
}
