//! `himaya.v1.Cases`: a case as the calling agency may see it, through the redactor.

use std::sync::Arc;

use himaya_proto::convert::purpose_from;
use himaya_proto::status::{msg, status};
use himaya_proto::v1 as pb;
use himaya_record::{CaseId, CaseRecord, Problem, Purpose, Violations};
use himaya_settings::AgencySettings;
use himaya_sharing::{disclose, Decision, DenyReason, Recipient};
use tonic::{Request, Response, Status};

use himaya_bus::Exchange;
use himaya_events::{keys, new_message_id, DisclosureRecorded};

use crate::access::{recipients, CaseParties, Need};
use crate::db::{deliveries, load_case, DeliveryRow};
use crate::{CasesError, State};

pub struct CasesApi(pub(crate) Arc<State>);

#[tonic::async_trait]
impl pb::cases_server::Cases for CasesApi {
    #[tracing::instrument(skip_all, fields(case_id, agency))]
    async fn get_case(
        &self,
        req: Request<pb::GetCaseRequest>,
    ) -> Result<Response<pb::SharedCase>, Status> {
        let (meta, _, r) = req.into_parts();
        let lang = himaya_proto::status::lang(&meta);
        let (agency_id, agency) = self.0.calling_agency(&meta)?;
        tracing::Span::current().record("agency", agency_id.as_str());
        let Ok(case_id) = CaseId::parse(&r.case_id) else {
            let mut v = Violations::new();
            v.push(
                "case_id",
                Problem::InvalidCode {
                    expected: "a case id such as case_0190f1b2c3d47e8f9a0b1c2d3e4f5a6b",
                },
            );
            return Err(CasesError::Invalid(v, lang).into());
        };
        tracing::Span::current().record("case_id", case_id.to_string());
        let record = load_case(&self.0.pool, &case_id).await?.ok_or_else(|| {
            CasesError::NotFound(msg!("case-not-found", case_id = case_id.to_string()))
        })?;
        let purpose = purpose_from(r.purpose);
        // Object-level authorization comes before the rest of the request is looked at,
        // on the record just loaded.
        let logged = purpose.unwrap_or(himaya_record::Purpose::ServiceProvision);
        let parties = CaseParties::of(&record, recipients(&self.0.pool, &case_id).await?);
        self.0
            .require_parties(
                himaya_proto::status::acting(&meta).as_ref(),
                Some(&parties),
                &agency_id,
                &agency,
                &case_id,
                Need::Part,
                "grpc_read",
                logged,
            )
            .await?;
        let delivered = deliveries(&self.0.pool, &case_id).await?;
        let Some(purpose) = purpose else {
            let mut v = Violations::new();
            v.push(
                "purpose",
                Problem::NotChosen {
                    choices: "service_provision, emergency_response, legal_proceedings, statistics"
                        .into(),
                },
            );
            return Err(CasesError::Invalid(v, lang).into());
        };
        Ok(Response::new(
            share(
                &self.0,
                "grpc_read",
                &agency_id,
                &agency,
                &record,
                purpose,
                delivered,
                himaya_proto::status::person(&meta),
            )
            .await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(case_id, agency))]
    async fn break_glass(
        &self,
        req: Request<pb::BreakGlassRequest>,
    ) -> Result<Response<pb::SharedCase>, Status> {
        let (meta, r) = crate::work::acted(req);
        Ok(Response::new(
            crate::break_glass::open(&self.0, &meta, r).await?,
        ))
    }

    type ExportCasesStream = tokio_stream::wrappers::ReceiverStream<Result<pb::SharedCase, Status>>;

    #[tracing::instrument(skip_all, fields(agency))]
    async fn export_cases(
        &self,
        req: Request<pb::ExportCasesRequest>,
    ) -> Result<Response<Self::ExportCasesStream>, Status> {
        let (meta, _, r) = req.into_parts();
        let (agency_id, agency) = self.0.calling_agency(&meta)?;
        tracing::Span::current().record("agency", agency_id.as_str());
        let checked =
            crate::export::ExportRequest::check(agency_id, &r, himaya_proto::status::lang(&meta))?;
        let permit = self.0.exports.clone().try_acquire_owned().map_err(|_| {
            status(
                tonic::Code::ResourceExhausted,
                &msg!("export-busy", count = crate::MAX_EXPORTS),
            )
        })?;
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let state = self.0.clone();
        let agency = (*agency).clone();
        tokio::spawn(async move {
            crate::export::run(state, agency, checked, tx).await;
            drop(permit);
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn list_notices(
        &self,
        req: Request<pb::ListNoticesRequest>,
    ) -> Result<Response<pb::NoticeList>, Status> {
        let (meta, _, r) = req.into_parts();
        let (agency_id, _) = self.0.calling_agency(&meta)?;
        Ok(Response::new(
            crate::notices::list(&self.0, &agency_id, &r).await?,
        ))
    }

    async fn acknowledge_notice(
        &self,
        req: Request<pb::AcknowledgeNoticeRequest>,
    ) -> Result<Response<pb::Notice>, Status> {
        let (meta, r) = crate::work::acted(req);
        let (agency_id, _) = self.0.calling_agency(&meta)?;
        Ok(Response::new(
            crate::notices::acknowledge(&self.0, &agency_id, &r, himaya_proto::status::lang(&meta))
                .await?,
        ))
    }

    async fn get_statistics(
        &self,
        req: Request<pb::GetStatisticsRequest>,
    ) -> Result<Response<pb::Statistics>, Status> {
        let (meta, _, r) = req.into_parts();
        let (agency_id, agency) = self.0.calling_agency(&meta)?;
        let policy = &self.0.settings.sharing;
        if !policy.allows_statistics(agency.agency_type) {
            tracing::info!(agency = %agency_id, "statistics refused: no policy rule");
            return Err(CasesError::PermissionDenied(msg!(
                "statistics-not-allowed",
                agency_id = &agency_id
            ))
            .into());
        }
        let gov = Some(r.governorate.trim()).filter(|g| !g.is_empty());
        let cells = crate::db::case_counts(&self.0.pool, gov)
            .await?
            .into_iter()
            .map(|c| {
                let count = policy.statistic(c.count);
                pb::StatisticsCell {
                    governorate: c.governorate,
                    risk_level: c.risk_level,
                    status: c.status,
                    suppressed: count.is_none(),
                    count,
                }
            })
            .collect();
        tracing::info!(agency = %agency_id, "statistics disclosed (aggregates)");
        Ok(Response::new(pb::Statistics {
            cells,
            min_count: policy.statistics_min_count,
            computed_at: chrono::Utc::now().to_rfc3339(),
        }))
    }
}

/// The disclosure-log entry of one decision on case data: the disclosure, or the refusal
/// with its reason. `channel` says which path asked (`grpc_read`, `grpc_call`,
/// `break_glass`, `export`); [`log_events`] records it through the outbox.
pub(crate) fn decision_event(
    channel: &str,
    case_id: &CaseId,
    agency_id: &str,
    purpose: himaya_record::Purpose,
    outcome: Result<&himaya_sharing::Disclosure, &str>,
) -> DisclosureRecorded {
    DisclosureRecorded {
        message_id: new_message_id(),
        occurred_at: chrono::Utc::now().to_rfc3339(),
        source: "cases".into(),
        channel: channel.into(),
        case_id: case_id.to_string(),
        referral_id: None,
        recipient: agency_id.to_owned(),
        purpose: purpose.as_str().into(),
        decision: if outcome.is_ok() { "permit" } else { "deny" }.into(),
        reason: outcome.err().map(str::to_owned),
        categories: outcome
            .map(|d| d.categories.iter().map(|c| c.as_str().to_owned()).collect())
            .unwrap_or_default(),
        basis: outcome.map(|d| d.basis.clone()).unwrap_or_default(),
        delivery_message_id: None,
        person: None,
    }
}

/// Enqueues disclosure-log entries in one transaction: committed before the data they
/// record leaves the hub. Once committed, each permit or deny is counted
/// (`himaya_consent_decisions_total`, by purpose and the recipient's agency type).
pub(crate) async fn log_events(
    state: &State,
    events: &[DisclosureRecorded],
) -> Result<(), CasesError> {
    let mut tx = state.pool.begin().await?;
    for event in events {
        himaya_store::outbox::enqueue_event(
            &mut tx,
            Exchange::Events,
            keys::DISCLOSURE_RECORDED,
            event,
            1,
            &event.case_id,
        )
        .await?;
    }
    tx.commit().await?;
    for e in events {
        let Some(agency) = state.settings.agencies.get(&e.recipient) else {
            continue;
        };
        let purpose = Purpose::parse(&e.purpose).map_or("other", Purpose::as_str);
        match e.decision.as_str() {
            "permit" => state
                .metrics
                .consent
                .decided(purpose, agency.agency_type.as_str(), true),
            "deny" => state
                .metrics
                .consent
                .decided(purpose, agency.agency_type.as_str(), false),
            _ => {}
        }
    }
    Ok(())
}

/// The one decision on a case leaving through a read (`GetCase`, `ExportCases`): the
/// sharing policy and the case's consents through the redactor (`disclose`), the decision
/// written to the disclosure log on `channel` before the answer leaves. A refusal is
/// PERMISSION_DENIED saying which half refused (a message of the catalogue).
// The caller is an agency (id, settings) and, from the web front, a person: grouping them
// would only move the count.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn share(
    state: &State,
    channel: &str,
    agency_id: &str,
    agency: &AgencySettings,
    record: &CaseRecord,
    purpose: Purpose,
    delivered: Vec<DeliveryRow>,
    person: Option<String>,
) -> Result<pb::SharedCase, CasesError> {
    let (answer, mut event) = decide(
        state, channel, agency_id, agency, record, purpose, delivered,
    )?;
    // Who read, when the web front proved them: the log names the person, not only
    // their agency.
    event.person = person;
    log_events(state, &[event]).await?;
    answer
}

/// What [`share`] answers, and the disclosure-log entry that must be committed before the
/// answer leaves (callers deciding many cases commit their entries together).
pub(crate) type Decided = (Result<pb::SharedCase, CasesError>, DisclosureRecorded);

/// [`share`]'s decision, without its I/O.
pub(crate) fn decide(
    state: &State,
    channel: &str,
    agency_id: &str,
    agency: &AgencySettings,
    record: &CaseRecord,
    purpose: Purpose,
    delivered: Vec<DeliveryRow>,
) -> Result<Decided, CasesError> {
    let case_id = &record.case_id;
    let to = Recipient {
        agency_id,
        agency_type: agency.agency_type,
    };
    let settings = &state.settings;
    // The ministry that owns the case acts under a legal mandate: it reads its cases
    // whatever the consent, on that basis (configurable; see docs/decisions.md).
    let owner = agency.agency_type == himaya_record::AgencyType::SocialAffairs
        && agency.covers(&record.child.governorate);
    let decision = if owner && settings.consent.owner_reads_by_legal_obligation {
        himaya_sharing::disclose_by_mandate(&settings.sharing, record, to, purpose)
    } else {
        disclose(
            &settings.sharing,
            &settings.consent,
            record,
            to,
            purpose,
            chrono::Utc::now(),
        )
    };
    let shared = match decision.map_err(CasesError::from)? {
        Decision::Permit(d) => d,
        Decision::Deny { reason } => {
            tracing::info!(case_id = %case_id, agency = %agency_id, purpose = %purpose, reason = reason.as_str(), "disclosure denied");
            let event = decision_event(channel, case_id, agency_id, purpose, Err(reason.as_str()));
            let (t, p, c) = (
                agency.agency_type.to_string(),
                purpose.to_string(),
                case_id.to_string(),
            );
            let refusal = match reason {
                DenyReason::NoPolicyRule => {
                    msg!("sharing-no-policy-rule", agency_type = t, purpose = p)
                }
                DenyReason::NoConsent => msg!(
                    "sharing-no-consent",
                    case_id = c,
                    agency_id = agency_id,
                    purpose = p
                ),
                DenyReason::NoAssent => msg!("sharing-no-assent", case_id = c),
                DenyReason::StatisticsAreAggregates => {
                    msg!("sharing-statistics-aggregates-only")
                }
                DenyReason::NothingInCommon => msg!(
                    "sharing-nothing-in-common",
                    agency_type = t,
                    agency_id = agency_id,
                    purpose = p
                ),
            };
            return Ok((Err(CasesError::PermissionDenied(refusal)), event));
        }
    };
    tracing::info!(case_id = %case_id, agency = %agency_id, purpose = %purpose, categories = shared.categories.len(), "case disclosed");
    let event = decision_event(channel, case_id, agency_id, purpose, Ok(&shared));
    let answer = pb::SharedCase {
        case_id: case_id.to_string(),
        version: record.version,
        document_json: shared.document.to_string(),
        categories: himaya_proto::convert::wires(&shared.categories),
        deliveries: delivered
            .into_iter()
            .map(|d| pb::DeliveryStatus {
                agency_id: d.agency_id,
                outcome: himaya_proto::convert::wire::<himaya_record::DeliveryOutcome>(&d.outcome),
                http_status: d.http_status,
                recorded_at: d.recorded_at.to_rfc3339(),
                reason: d.reason,
                referral_id: d.referral_id,
            })
            .collect(),
        break_glass_id: None,
        break_glass_expires_at: None,
    };
    Ok((Ok(answer), event))
}
