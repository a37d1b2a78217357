//! Each webhook route: which standard it speaks, which agency types may post to it, the
//! inbound mapping that reads it, and the gRPC call it becomes.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use himaya_connect::StatusChange;
use himaya_proto::convert::{code, purpose_to, referral_details_to_pb, source_to, wire};
use himaya_proto::v1 as pb;
use himaya_record::service_referral::TaskState;
use himaya_record::{AgencyType, Purpose, ReferralDetails, SourceKind};
use himaya_settings::Protocol;
use serde_json::{json, Value};
use tonic::Code;

use super::hub_client::refusal;
use super::{authenticate, reply, App, Refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A health agency's FHIR Task status change.
    FhirTask,
    /// A justice agency's status or hearing outcome.
    JusticeStatus,
    /// A case a Primero-run directorate pushes: an agency referral into the hub.
    PrimeroCase,
    /// A Primero referral or transfer accepted, rejected or done.
    PrimeroReferral,
    /// A school system's referral.
    SchoolReferral,
    /// An emergency line escalation.
    HotlineEscalation,
}

impl Route {
    pub const ALL: [Route; 6] = [
        Route::FhirTask,
        Route::JusticeStatus,
        Route::PrimeroCase,
        Route::PrimeroReferral,
        Route::SchoolReferral,
        Route::HotlineEscalation,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Route::FhirTask => "/agencies/{agency}/fhir/Task",
            Route::JusticeStatus => "/agencies/{agency}/justice/status",
            Route::PrimeroCase => "/agencies/{agency}/primero/api/v2/cases",
            Route::PrimeroReferral => "/agencies/{agency}/primero/api/v2/referrals",
            Route::SchoolReferral => "/agencies/{agency}/school/referrals",
            Route::HotlineEscalation => "/agencies/{agency}/hotline/escalations",
        }
    }

    /// Whether the message id is the agency's own, one per message. Derived ids (a FHIR
    /// Task's version, a Primero record's state) legitimately come back with other field
    /// values, so only the agency's own ids are checked against the body.
    pub fn own_message_id(self) -> bool {
        matches!(
            self,
            Route::JusticeStatus | Route::SchoolReferral | Route::HotlineEscalation
        )
    }

    pub fn name(self) -> &'static str {
        match self {
            Route::FhirTask => "fhir_task",
            Route::JusticeStatus => "justice_status",
            Route::PrimeroCase => "primero_case",
            Route::PrimeroReferral => "primero_referral",
            Route::SchoolReferral => "school_referral",
            Route::HotlineEscalation => "hotline_escalation",
        }
    }

    pub fn protocol(self) -> Protocol {
        match self {
            Route::FhirTask => Protocol::FhirR4,
            Route::JusticeStatus => Protocol::JusticeMinimal,
            Route::PrimeroCase | Route::PrimeroReferral => Protocol::PrimeroV2,
            Route::SchoolReferral => Protocol::School,
            Route::HotlineEscalation => Protocol::EmergencyLine,
        }
    }

    pub fn agency_types(self) -> &'static [AgencyType] {
        match self {
            Route::FhirTask => &[AgencyType::Health],
            Route::JusticeStatus => &[AgencyType::Justice],
            Route::PrimeroCase | Route::PrimeroReferral => &[AgencyType::SocialAffairs],
            Route::SchoolReferral => &[AgencyType::School],
            Route::HotlineEscalation => &[AgencyType::EmergencyLine],
        }
    }
}

/// What a payload asks of the hub, once read.
enum Ask {
    Status(StatusChange),
    Referral {
        message_id: String,
        kind: Intake,
        details: Box<ReferralDetails>,
    },
}

enum Intake {
    School {
        officer_ref: String,
    },
    Hotline {
        call_ref: String,
        operator_ref: String,
    },
    /// An agency's own case; `record`: its id in the agency's system.
    Agency {
        record: String,
    },
}

impl Intake {
    /// The agency's own id for what it sent, kept so the hub's feedback can name it.
    fn record(&self) -> Option<&str> {
        match self {
            Intake::Agency { record } => Some(record),
            _ => None,
        }
    }
}

fn read(route: Route, v: &Value) -> Result<Ask, Refusal> {
    Ok(match route {
        Route::FhirTask => Ask::Status(himaya_connector_health::task::status_change(v)?),
        Route::JusticeStatus => Ask::Status(himaya_connector_justice::status::status_change(v)?),
        Route::PrimeroReferral => Ask::Status(
            himaya_connector_social_affairs::inbound::referral_status(v)?,
        ),
        Route::PrimeroCase => {
            let c = himaya_connector_social_affairs::inbound::case_referral(v)?;
            Ask::Referral {
                message_id: c.message_id,
                kind: Intake::Agency {
                    record: c.record_id,
                },
                details: Box::new(c.details),
            }
        }
        Route::SchoolReferral => {
            let s = himaya_connector_schools::inbound::school_referral(v)?;
            Ask::Referral {
                message_id: s.message_id,
                kind: Intake::School {
                    officer_ref: s.officer_ref,
                },
                details: Box::new(s.referral),
            }
        }
        Route::HotlineEscalation => {
            let e = himaya_connector_emergency_line::inbound::escalation(v)?;
            Ask::Referral {
                message_id: e.message_id,
                kind: Intake::Hotline {
                    call_ref: e.call_ref,
                    operator_ref: e.operator_ref,
                },
                details: Box::new(e.referral),
            }
        }
    })
}

/// Reads the payload, answers a message seen before as it was answered, else makes the
/// call and remembers the answer. `(status, body, replayed)`.
pub(super) async fn process(
    route: Route,
    app: &App,
    agency: &str,
    v: &Value,
) -> Result<(StatusCode, Value, bool), Refusal> {
    let mut ask = read(route, v)?;
    // A place the agency sent as its own code is read back as the governorate's name.
    if let (Ask::Referral { details, .. }, Some(a)) = (&mut ask, app.settings.agencies.get(agency))
    {
        details.child.governorate = a.place_named(&details.child.governorate).to_owned();
    }
    let message_id = match &ask {
        Ask::Status(c) => c.message_id.clone(),
        Ask::Referral { message_id, .. } => message_id.clone(),
    };
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
                "this message id was already used for a different message; give each new \
                 message its own id (a repeat of the same message is answered as the first time)",
            )
            .ar(
                "رقم الرسالة هذا استُخدم من قبل لرسالة مختلفة؛ أعطِ كل رسالة جديدة رقمًا خاصًا بها \
                 (تكرار الرسالة نفسها يُجاب عنه كما أُجيب في المرة الأولى)",
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
        "the hub cannot take this now; send it again later (same message id)",
    )
    .ar("تعذر على المنصة استلام هذا الآن؛ أعد الإرسال لاحقًا بنفس رقم الرسالة")
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
        "the referral kept changing while this was applied; send it again",
    )
    .ar("ظلت الإحالة تتغير أثناء تطبيق هذا؛ أعد الإرسال"))
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
        authenticate(&app.settings, &agency, &headers, Route::HotlineEscalation)?;
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
