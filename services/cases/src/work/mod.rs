//! The case-owning ministry's services, each over the same state: `himaya.v1.CaseWork`
//! (a case's moves and the ministry's lists), `Staff`, `Consents`, `Duplicates` and
//! `Oversight`; and `ServiceReferrals`. Handlers are thin: request → checked values (all
//! violations at once, wire enums included) → one locked, versioned change.

mod acceptance;
mod closure;
mod consent;
mod indicators;
mod merging;
mod oversight;
mod plan;
mod reads;
mod referrals;
mod staff;

use std::sync::Arc;

use chrono::{Duration, Utc};
use himaya_proto::convert as cv;
use himaya_proto::status::{msg, Lang};
use himaya_proto::v1 as pb;
use himaya_record::lifecycle::{
    self, apply, on_registration, AcceptanceDecision, ClosureReason, DeadlineKind, Move,
    ReviewKind, RiskDeadlines,
};
use himaya_record::validate::{age_on, check_text, MAX_NARRATIVE};
use himaya_record::{AgencyType, CaseId, CaseRecord, CaseStatus, Problem, RiskLevel, Violations};
use himaya_settings::DeadlineSettings;
use sqlx::PgConnection;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::access::Need;
use crate::change::{close_deadlines, load_for_update, open_deadline, save};
use crate::{CasesError, State};

pub(crate) use acceptance::referral_on;
pub use consent::ConsentsApi;
pub use merging::DuplicatesApi;
pub use oversight::OversightApi;
pub(crate) use reads::explain;
pub use referrals::ServiceReferralsApi;
pub use staff::StaffApi;

/// `himaya.v1.CaseWork`: acceptance, assignment, reviews, assessment, plan, closure,
/// reopening, a case's history, and the ministry's lists of cases and escalations.
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
        lang: himaya_proto::status::lang(meta),
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

/// A name from a domain vocabulary read from `col`, as its wire number; a name outside
/// the vocabulary is a decoding error (naming the column, never the value).
pub(crate) fn wire_of<T: cv::WireEnum>(col: &str, name: &str) -> Result<i32, sqlx::Error> {
    match cv::wire::<T>(name) {
        0 => Err(sqlx::Error::ColumnDecode {
            index: col.to_owned(),
            source: format!("`{col}` holds a name outside its vocabulary").into(),
        }),
        n => Ok(n),
    }
}

/// The same for a nullable column: NULL is UNSPECIFIED.
pub(crate) fn wire_of_opt<T: cv::WireEnum>(
    col: &str,
    name: Option<&str>,
) -> Result<i32, sqlx::Error> {
    name.map_or(Ok(0), |name| wire_of::<T>(col, name))
}

fn required_text(v: &mut Violations, field: &str, text: &str) {
    if text.trim().is_empty() {
        v.push(field, Problem::Required);
    }
    check_text(v, field, text, MAX_NARRATIVE);
}

fn illegal(e: lifecycle::IllegalMove) -> CasesError {
    CasesError::Precondition(e.msg())
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
        status: cv::status_to(r.status).into(),
        note,
        warnings: Vec::new(),
    })
}

impl State {
    /// The calling agency, which must own cases (social affairs).
    fn owner(&self, meta: &MetadataMap) -> Result<String, CasesError> {
        let (id, agency) = self.calling_agency(meta)?;
        if agency.agency_type == AgencyType::SocialAffairs {
            Ok(id)
        } else {
            Err(CasesError::PermissionDenied(msg!(
                "case-owner-only",
                agency_id = id
            )))
        }
    }

    /// The calling agency, which must own every case named (a social affairs agency whose
    /// area the case is in: `crate::access`). Checked before the request's other fields,
    /// so a caller learns nothing about a case that is not its own; an id that does not
    /// parse is left to the handler's validation.
    async fn owner_of(&self, meta: &MetadataMap, case_ids: &[&str]) -> Result<String, CasesError> {
        let id = self.owner(meta)?;
        let (_, agency) = self.calling_agency(meta)?;
        let acting = himaya_proto::status::acting(meta);
        for raw in case_ids {
            if let Ok(case_id) = CaseId::parse(raw.trim()) {
                self.require_case(
                    acting.as_ref(),
                    &id,
                    &agency,
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
        let d = &self.settings.lifecycle.deadlines;
        deadlines(match risk {
            RiskLevel::High => &d.high,
            RiskLevel::Medium => &d.medium,
            RiskLevel::Low => &d.low,
        })
    }
}

#[tonic::async_trait]
impl pb::case_work_server::CaseWork for CaseWorkApi {
    async fn decide_acceptance(
        &self,
        req: Request<pb::DecideAcceptanceRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = acted(req);
        Ok(self.decide(&meta, r).await?)
    }

    async fn assign_case(
        &self,
        req: Request<pb::AssignCaseRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = acted(req);
        Ok(self.assign(&meta, r).await?)
    }

    async fn record_review(
        &self,
        req: Request<pb::RecordReviewRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = acted(req);
        Ok(self.review(&meta, r).await?)
    }

    async fn record_assessment(
        &self,
        req: Request<pb::RecordAssessmentRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = acted(req);
        Ok(self.assess(&meta, r).await?)
    }

    async fn set_plan(
        &self,
        req: Request<pb::SetPlanRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = acted(req);
        Ok(CaseWorkApi::set_plan(self, &meta, r).await?)
    }

    async fn complete_action(
        &self,
        req: Request<pb::CompleteActionRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = acted(req);
        Ok(CaseWorkApi::complete_action(self, &meta, r).await?)
    }

    async fn close_case(
        &self,
        req: Request<pb::CloseCaseRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = acted(req);
        Ok(self.close(&meta, r).await?)
    }

    async fn reopen_case(
        &self,
        req: Request<pb::ReopenCaseRequest>,
    ) -> Result<Response<pb::CaseChange>, Status> {
        let (meta, r) = acted(req);
        Ok(self.reopen(&meta, r).await?)
    }

    async fn get_history(
        &self,
        req: Request<pb::GetHistoryRequest>,
    ) -> Result<Response<pb::History>, Status> {
        self.history(req).await
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
