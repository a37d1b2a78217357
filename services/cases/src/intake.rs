//! `himaya.v1.Intake`: thin handlers: wire message → validated domain referral → stored
//! case with its event.

use std::sync::Arc;

use chrono::Utc;
use himaya_proto::convert::{referral_details, source_from};
use himaya_proto::status::msg;
use himaya_proto::v1 as pb;
use himaya_record::validate::{agency_source_allowed, validate_envelope};
use himaya_record::{
    AgencyType, CaseRecord, Priority, Problem, ReferralSource, SourceKind, Violations,
};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::db::{NewCase, Submitted};
use crate::opening::Opening;
use crate::{CasesError, State};

pub struct IntakeApi(pub(crate) Arc<State>);

/// What every path in has in common once its envelope is read.
struct Submission {
    submission_id: String,
    source: ReferralSource,
    body: Option<pb::ReferralDetails>,
}

impl IntakeApi {
    /// Checks that `id` names a configured agency of one of `types`.
    fn check_agency(
        &self,
        v: &mut Violations,
        field: &str,
        id: &str,
        types: &[AgencyType],
        expected: &'static str,
    ) {
        if id.is_empty() {
            return; // reported as required by the envelope check
        }
        match self.0.settings.agencies.get(id) {
            Some(a) if types.contains(&a.agency_type) => {}
            _ => v.push(field, Problem::InvalidCode { expected }),
        }
    }

    /// [`IntakeApi::take`], counted: a new referral by its source kind and priority,
    /// anything else as a refusal by reason (`himaya_intake_*`).
    async fn submit(
        &self,
        opening: &Opening,
        meta: &MetadataMap,
        v: Violations,
        s: Submission,
    ) -> Result<pb::SubmitReferralResponse, CasesError> {
        let kind = s.source.kind.as_str();
        let taken = self.take(opening, meta, v, s).await;
        let intake = &self.0.metrics.intake;
        match &taken {
            Ok(r) if r.replayed => intake.refused("duplicate"),
            Ok(r) => intake.accepted(
                kind,
                if r.priority == pb::Priority::Urgent as i32 {
                    "urgent"
                } else {
                    "routine"
                },
            ),
            Err(CasesError::Invalid(..)) => intake.refused("invalid"),
            Err(CasesError::Busy(_)) => intake.refused("backlog"),
            Err(CasesError::PermissionDenied(_) | CasesError::Unauthenticated(_)) => {
                intake.refused("unauthorized")
            }
            Err(_) => intake.refused("unavailable"),
        }
        taken
    }

    async fn take(
        &self,
        opening: &Opening,
        meta: &MetadataMap,
        mut v: Violations,
        s: Submission,
    ) -> Result<pb::SubmitReferralResponse, CasesError> {
        let lang = himaya_proto::status::lang(meta);
        let submitter = s.source.agency_id.clone().unwrap_or_default();
        // The gateway established the caller. A well-formed envelope naming another
        // agency is refused; a malformed one is reported field by field below.
        let caller = caller(meta).unwrap_or_default();
        if v.is_empty() && caller != submitter {
            return Err(CasesError::PermissionDenied(msg!(
                "referral-on-behalf-of-another",
                agency_id = caller
            )));
        }
        let now = Utc::now();
        let details = referral_details(s.body, now.date_naive(), "referral");
        let mut details = match details {
            Ok(d) => d,
            Err(more) => {
                v.extend(more);
                return Err(CasesError::Invalid(v, lang));
            }
        };
        // Places are the gazetteer's: a misspelling is folded to the official name, an
        // unknown place refused, so no referral is accepted that no agency can cover.
        self.0
            .settings
            .gazetteer
            .place_child(&mut v, "referral", &mut details.child);
        if !v.is_empty() {
            return Err(CasesError::Invalid(v, lang));
        }
        let record = CaseRecord::open(details, s.source, now);
        // A routine referral waits for the backlog behind intake to go down (the caller
        // sends it again); an urgent one passes every queue in its own lane.
        if record.referral.priority != Priority::Urgent && self.0.metrics.intake.backlogged() {
            return Err(CasesError::Busy(self.0.settings.limits.busy_retry_after()));
        }
        // The event carries this call's span (the caller's trace continued by the
        // gateway), or, with traces off, the caller's `traceparent` as it came.
        let traceparent = himaya_trace::onward(
            meta.get("traceparent")
                .and_then(|t| t.to_str().ok())
                .map(str::to_owned),
        );
        let (out, proposed_services): (Submitted, _) = opening
            .open(NewCase {
                record: record.clone(),
                submitter: submitter.clone(),
                submission_id: s.submission_id,
                traceparent,
            })
            .await?;
        let span = tracing::Span::current();
        // This handler's span (`#[instrument]` above) names what the call made.
        span.record("case_id", tracing::field::display(&out.case_id));
        span.record("referral_id", tracing::field::display(&out.referral_id));
        tracing::info!(
            case_id = %out.case_id,
            referral_id = %out.referral_id,
            submitter = %submitter,
            replayed = out.replayed,
            priority = %out.priority,
            "referral accepted"
        );
        let priority = match out.priority.as_str() {
            "urgent" => pb::Priority::Urgent,
            _ => pb::Priority::Routine,
        };
        Ok(pb::SubmitReferralResponse {
            case_id: out.case_id,
            referral_id: out.referral_id,
            version: out.version,
            replayed: out.replayed,
            priority: priority.into(),
            proposed_services,
            warnings: crate::undelivered::warnings(&self.0.settings, &record, None, lang),
        })
    }
}

pub(crate) use himaya_proto::status::caller;

#[tonic::async_trait]
impl pb::intake_server::Intake for IntakeApi {
    #[tracing::instrument(skip_all, fields(path = "school", case_id = tracing::field::Empty, referral_id = tracing::field::Empty))]
    async fn submit_school_referral(
        &self,
        req: Request<pb::SchoolReferralRequest>,
    ) -> Result<Response<pb::SubmitReferralResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        let mut v = Violations::new();
        validate_envelope(
            &mut v,
            &r.submission_id,
            &[
                ("school_agency_id", &r.school_agency_id),
                ("officer_ref", &r.officer_ref),
            ],
        );
        self.check_agency(
            &mut v,
            "school_agency_id",
            &r.school_agency_id,
            &[AgencyType::School],
            "the id of a school in the agency directory",
        );
        let s = Submission {
            submission_id: r.submission_id,
            source: ReferralSource {
                kind: SourceKind::School,
                agency_id: Some(r.school_agency_id),
                // The person the web front proved, over the reference the request types.
                staff_ref: Some(himaya_proto::status::person(&meta).unwrap_or(r.officer_ref)),
            },
            body: r.referral,
        };
        Ok(Response::new(
            self.submit(self.0.routine(), &meta, v, s).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(path = "hotline", case_id = tracing::field::Empty, referral_id = tracing::field::Empty))]
    async fn escalate_hotline_call(
        &self,
        req: Request<pb::HotlineEscalationRequest>,
    ) -> Result<Response<pb::SubmitReferralResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        let mut v = Violations::new();
        validate_envelope(
            &mut v,
            &r.submission_id,
            &[
                ("hotline_agency_id", &r.hotline_agency_id),
                ("call_ref", &r.call_ref),
                ("operator_ref", &r.operator_ref),
            ],
        );
        self.check_agency(
            &mut v,
            "hotline_agency_id",
            &r.hotline_agency_id,
            &[AgencyType::EmergencyLine],
            "the id of an emergency line in the agency directory",
        );
        let s = Submission {
            submission_id: r.submission_id,
            source: ReferralSource {
                kind: SourceKind::Hotline,
                agency_id: Some(r.hotline_agency_id),
                staff_ref: Some(format!(
                    "{}/{}",
                    r.call_ref,
                    himaya_proto::status::person(&meta).unwrap_or(r.operator_ref)
                )),
            },
            body: r.referral,
        };
        // Its own connections: routine intake cannot hold them all.
        Ok(Response::new(
            self.submit(self.0.urgent(), &meta, v, s).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(path = "agency", case_id = tracing::field::Empty, referral_id = tracing::field::Empty))]
    async fn submit_agency_referral(
        &self,
        req: Request<pb::AgencyReferralRequest>,
    ) -> Result<Response<pb::SubmitReferralResponse>, Status> {
        let (meta, _, r) = req.into_parts();
        let mut v = Violations::new();
        validate_envelope(&mut v, &r.submission_id, &[("agency_id", &r.agency_id)]);
        let others = [
            AgencyType::SocialAffairs,
            AgencyType::Health,
            AgencyType::Justice,
            AgencyType::CashAssistance,
            AgencyType::Community,
        ];
        self.check_agency(
            &mut v,
            "agency_id",
            &r.agency_id,
            &others,
            "the id of an agency in the directory (schools and the hotline have their own calls)",
        );
        let kind = source_from(r.source_kind).filter(|k| agency_source_allowed(*k));
        if kind.is_none() {
            v.push(
                "source_kind",
                Problem::NotChosen {
                    choices: "self_referral, community_committee, health, justice, cash_assistance, other_agency".into(),
                },
            );
        }
        let s = Submission {
            submission_id: r.submission_id,
            source: ReferralSource {
                kind: kind.unwrap_or(SourceKind::OtherAgency),
                agency_id: Some(r.agency_id),
                // The person the web front proved (a committee member), if any.
                staff_ref: himaya_proto::status::person(&meta),
            },
            body: r.referral,
        };
        Ok(Response::new(
            self.submit(self.0.routine(), &meta, v, s).await?,
        ))
    }
}
