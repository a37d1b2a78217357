//! Each webhook route: which standard it speaks, which agency types may post to it, the
//! inbound mapping that reads it, and the gRPC call it becomes.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use std::sync::Arc;

use himaya_connect::{Ask, Inbound, Intake, Standard, StatusChange};
use himaya_proto::convert::{code, purpose_to, referral_details_to_pb, source_to, wire};
use himaya_proto::status::msg;
use himaya_proto::v1 as pb;
use himaya_record::service_referral::TaskState;
use himaya_record::{AgencyType, Purpose, ReferralDetails, SourceKind};
use himaya_settings::Protocol;
use serde_json::{json, Value};
use tonic::Code;

use super::hub_client::refusal;
use super::{authenticate, reply, App, Refusal};

/// A webhook route: one of a standard's inbound routes, from the registry of standards
/// (`standards()` in the binary's `src/connectors.rs`).
#[derive(Debug, Clone, Copy)]
pub struct Route {
    protocol: Protocol,
    inbound: &'static Inbound,
}

impl Route {
    /// Every standard's inbound routes.
    pub fn all(standards: &[Arc<dyn Standard>]) -> Vec<Route> {
        standards
            .iter()
            .flat_map(|s| {
                let protocol = s.protocol();
                s.inbound()
                    .iter()
                    .map(move |inbound| Route { protocol, inbound })
            })
            .collect()
    }

    /// A health agency's FHIR Task (created with `POST`, updated with `PUT`).
    pub fn fhir_task() -> Route {
        Route {
            protocol: Protocol::FhirR4,
            inbound: &himaya_connector_health::TASK,
        }
    }

    /// A Primero case, pushed or pulled.
    pub fn primero_case() -> Route {
        Route {
            protocol: Protocol::PrimeroV2,
            inbound: &himaya_connector_social_affairs::CASE,
        }
    }

    /// An emergency line escalation (whose rights the line's follow-ups share).
    pub fn hotline_escalation() -> Route {
        Route {
            protocol: Protocol::EmergencyLine,
            inbound: &himaya_connector_emergency_line::ESCALATION,
        }
    }

    /// The route's path, `{agency}` to be matched.
    pub fn path(self) -> String {
        format!("/agencies/{{agency}}/{}", self.inbound.path)
    }

    /// The path an agency posted to.
    pub fn instance(self, agency: &str) -> String {
        format!("/agencies/{agency}/{}", self.inbound.path)
    }

    pub fn own_message_id(self) -> bool {
        self.inbound.own_message_id
    }

    pub fn name(self) -> &'static str {
        self.inbound.name
    }

    pub fn protocol(self) -> Protocol {
        self.protocol
    }

    pub fn agency_types(self) -> &'static [AgencyType] {
        self.inbound.agency_types
    }

    /// The same route as `other`.
    pub fn is(self, other: Route) -> bool {
        self.inbound.name == other.inbound.name
    }
}

fn read(route: Route, app: &App, agency: &str, v: &Value) -> Result<Ask, Refusal> {
    Ok((route.inbound.read)(&app.settings, agency, v)?)
}

/// Reads the payload, answers a message seen before as it was answered, else makes the
/// call and remembers the answer. `(status, body, replayed)`.
pub(super) async fn process(
    route: Route,
    app: &App,
    agency: &str,
    v: &Value,
) -> Result<(StatusCode, Value, bool), Refusal> {
    let mut ask = read(route, app, agency, v)?;
    // A place the agency sent as its own code is read back as the governorate's name.
    if let (Ask::Referral { details, .. }, Some(a)) = (&mut ask, app.settings.agencies.get(agency))
    {
        details.child.governorate = a.place_named(&details.child.governorate).to_owned();
    }
    let message_id = ask.message_id().to_owned();
    let digest = body_digest(v);
    let seen: Option<(i32, Value, Option<String>)> = sqlx::query_as(
        "SELECT http_status, answer, body_sha256 FROM inbound_messages WHERE agency_id = $1 AND message_id = $2",
    )
    .bind(agency)
    .bind(&message_id)
    .fetch_optional(&app.pool)
    .await
    .map_err(storage)?;
    if let Some((status, answer, first)) = seen {
        if route.own_message_id() && first.is_some_and(|first| first != digest) {
            let mut reused = Refusal::new(
                StatusCode::CONFLICT,
                "message_id_reused",
                msg!("webhook-message-id-reused"),
            );
            reused.field = Some("message_id".into());
            return Err(reused);
        }
        let status =
            StatusCode::from_u16(u16::try_from(status).unwrap_or(200)).unwrap_or(StatusCode::OK);
        return Ok((status, answer, true));
    }
    let (status, answer, record) = match ask {
        Ask::Status(c) => (StatusCode::OK, status_change(app, agency, &c).await?, None),
        Ask::Referral {
            message_id,
            kind,
            details,
        } => {
            let record = kind.record().map(str::to_owned);
            let answer = submit(app, agency, &message_id, kind, &details).await?;
            (StatusCode::CREATED, answer, record)
        }
    };
    sqlx::query(
        "INSERT INTO inbound_messages (agency_id, message_id, route, http_status, answer, body_sha256, agency_record)
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(agency)
    .bind(&message_id)
    .bind(route.name())
    .bind(i32::from(status.as_u16()))
    .bind(&answer)
    .bind(&digest)
    .bind(&record)
    .execute(&app.pool)
    .await
    .map_err(storage)?;
    Ok((status, answer, false))
}

/// Whether the hub already took another version of this Task from the agency (so a `PUT`
/// of it is an update, not a create). `task` is the Task just processed.
pub(super) async fn task_known(app: &App, agency: &str, task: &Value, id: &str) -> bool {
    let systems = himaya_connector_health::mapping::Systems::new(&app.settings.standards.fhir);
    let Ok(this) = himaya_connector_health::task::status_change_with(task, &systems) else {
        return false;
    };
    let prefix = format!("task:{id}:");
    sqlx::query_scalar::<_, bool>(
        "SELECT EXISTS (SELECT 1 FROM inbound_messages
          WHERE agency_id = $1 AND route = $2 AND left(message_id, length($3)) = $3
            AND message_id <> $4)",
    )
    .bind(agency)
    .bind(Route::fhir_task().name())
    .bind(&prefix)
    .bind(&this.message_id)
    .fetch_one(&app.pool)
    .await
    .unwrap_or(false)
}

/// SHA-256 of the message's JSON with keys sorted and no whitespace: the same message
/// re-sent (re-serialized, re-indented) has the same digest.
fn body_digest(v: &Value) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(v.to_string().as_bytes()))
}

fn storage(e: sqlx::Error) -> Refusal {
    tracing::error!(error = %e, "the webhooks' store failed");
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        msg!("webhook-cannot-take-now"),
    )
}

/// Moves the service referral to the state the agency reported, through
/// `ServiceReferrals.UpdateServiceReferral` with the version just read. A referral
/// already in that state is a repeat, not an error.
async fn status_change(app: &App, agency: &str, c: &StatusChange) -> Result<Value, Refusal> {
    let mut client =
        pb::service_referrals_client::ServiceReferralsClient::new(app.hub.channel(agency).await?);
    for _ in 0..3 {
        let current = client
            .get_service_referral(app.hub.request(
                agency,
                pb::GetServiceReferralRequest {
                    service_referral_id: c.service_referral_id.clone(),
                },
            )?)
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        // Already there and nothing new to say (a repeat): nothing is recorded, and the
        // answer says so. A further report on a referral in progress (a second hearing)
        // carries a new note and is recorded as one more change; the same note again (a
        // retry, or a FHIR Task edited in another field) is the report already recorded.
        let report = c.state == "in_progress" && c.reason.is_some() && c.reason != current.reason;
        if code::<TaskState>(current.state) == c.state && !report {
            let mut a = answer(&current);
            a["changed"] = json!(false);
            return Ok(a);
        }
        let update = pb::UpdateServiceReferralRequest {
            service_referral_id: c.service_referral_id.clone(),
            expected_version: current.version,
            // A state outside the vocabulary goes as UNSPECIFIED: the hub refuses it,
            // naming the field and the choices.
            state: wire::<TaskState>(c.state),
            reason: c.reason.clone(),
            actor: c.actor.clone(),
        };
        match client
            .update_service_referral(app.hub.request(agency, update)?)
            .await
        {
            Ok(r) => {
                let mut a = answer(&r.into_inner());
                a["changed"] = json!(true);
                return Ok(a);
            }
            // Someone else moved it meanwhile: read it again.
            Err(s) if s.code() == Code::Aborted => continue,
            Err(s) => return Err(refusal(&s)),
        }
    }
    Err(Refusal::new(
        StatusCode::CONFLICT,
        "conflict",
        msg!("webhook-referral-kept-changing"),
    ))
}

fn answer(r: &pb::ServiceReferral) -> Value {
    json!({"service_referral_id": r.service_referral_id, "state": code::<TaskState>(r.state), "version": r.version})
}

async fn submit(
    app: &App,
    agency: &str,
    message_id: &str,
    kind: Intake,
    details: &ReferralDetails,
) -> Result<Value, Refusal> {
    let mut client = pb::intake_client::IntakeClient::new(app.hub.channel(agency).await?);
    let referral = Some(referral_details_to_pb(details));
    let submission_id = message_id.to_owned();
    let response = match kind {
        Intake::School { officer_ref } => {
            let req = pb::SchoolReferralRequest {
                submission_id,
                school_agency_id: agency.to_owned(),
                officer_ref,
                referral,
            };
            client
                .submit_school_referral(app.hub.request(agency, req)?)
                .await
        }
        Intake::Hotline {
            call_ref,
            operator_ref,
        } => {
            let req = pb::HotlineEscalationRequest {
                submission_id,
                call_ref,
                operator_ref,
                referral,
                hotline_agency_id: agency.to_owned(),
            };
            client
                .escalate_hotline_call(app.hub.request(agency, req)?)
                .await
        }
        Intake::Agency { .. } => {
            let req = pb::AgencyReferralRequest {
                submission_id,
                agency_id: agency.to_owned(),
                source_kind: source_to(SourceKind::OtherAgency).into(),
                referral,
            };
            client
                .submit_agency_referral(app.hub.request(agency, req)?)
                .await
        }
    }
    .map_err(|s| refusal(&s))?
    .into_inner();
    let mut body = json!({
        "case_ref": response.case_id,
        "referral_ref": response.referral_id,
        "priority": if response.priority == pb::Priority::Urgent as i32 { "urgent" } else { "routine" },
        "replayed": response.replayed,
    });
    if matches!(
        app.settings.agencies.get(agency).map(|a| a.agency_type),
        Some(AgencyType::EmergencyLine)
    ) {
        body = himaya_connector_emergency_line::inbound::acknowledgement(
            &response.case_id,
            &response.referral_id,
            response.replayed,
        );
    }
    Ok(body)
}

/// The emergency line's follow-up: where does the case it escalated stand? Read through
/// `Cases.GetCase` as the line, for emergency response, so only what the consent layer
/// lets the line see is used: the status, the risk level and whether it is assigned
/// (never which other agencies the case went to).
pub(super) async fn follow_up(
    State(app): State<App>,
    Path((agency, case_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let protocol = Protocol::EmergencyLine;
    let lang = himaya_proto::status::Lang::from_header(
        headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    );
    let outcome = async {
        authenticate(
            &app.settings,
            &agency,
            &headers,
            Route::hotline_escalation(),
        )?;
        let mut client = pb::cases_client::CasesClient::new(app.hub.channel(&agency).await?);
        let req = pb::GetCaseRequest {
            case_id,
            purpose: purpose_to(Purpose::EmergencyResponse).into(),
        };
        let shared = client
            .get_case(app.hub.request(&agency, req)?)
            .await
            .map_err(|s| refusal(&s))?
            .into_inner();
        let doc: Value = serde_json::from_str(&shared.document_json).unwrap_or(Value::Null);
        // Null when the line's policy does not disclose the assignment.
        let assigned = doc.get("assignment").map(|a| !a.is_null());
        Ok::<_, Refusal>((
            StatusCode::OK,
            json!({
                "case_ref": shared.case_id,
                "version": shared.version,
                "status": doc.get("status"),
                "risk_level": doc.get("risk_level"),
                "assigned": assigned,
            }),
        ))
    };
    let outcome: Result<(StatusCode, Value), Refusal> = super::hub_client::LANG
        .scope(lang, outcome)
        .await
        .map_err(|r| r.localized(lang));
    if let Err(r) = &outcome {
        tracing::warn!(agency = %agency, route = "hotline_follow_up", status = r.status.as_u16(), code = r.code, "webhook refused");
    }
    reply(protocol, outcome, false)
}
