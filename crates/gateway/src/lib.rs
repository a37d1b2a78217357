//! The one door of every gRPC call: who is calling (authentication) and whether that
//! kind of agency may call this RPC at all (authorization per RPC). Which case or
//! referral a caller may touch (object-level authorization) is decided by the handlers,
//! which know the objects; they read the caller this door established.
//!
//! With `grpc.tls` set, the caller is the agency named by its client certificate (chain
//! verified by rustls against `grpc.tls.client_ca_file`; name `<agency>.agency.himaya`
//! checked here). A claim in `x-himaya-agency` must match the certificate; without a
//! claim the certificate alone decides. Whatever the client sent in that header is
//! replaced by the proven identity before any handler runs. With `grpc.dev_identity`
//! (loopback only) the header is trusted as sent.

pub mod errors;
pub mod red;
mod trace;

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::{self, Either, Ready};
use himaya_proto::status::{localize, msg, status, CallerError, Lang, Msg};
use himaya_record::AgencyType;
use himaya_settings::{agency_certificate_name, Settings, WEB_COMPONENT_NAME};
use http::{HeaderValue, Request, Response};
use rustls_pki_types::{CertificateDer, ServerName};
use tonic::body::Body as BoxBody;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status};

/// The metadata key carrying the calling agency (after this door: the proven one).
pub const AGENCY_HEADER: &str = "x-himaya-agency";
/// The person acting, as the web component proved them (removed from anyone else).
pub use himaya_proto::status::{PERSON_HEADER, ROLES_HEADER};

/// Which kinds of agency may call an RPC.
#[derive(Debug, Clone, Copy)]
pub enum Callers {
    /// Any agency in the directory (the handler checks the objects).
    AnyAgency,
    /// Only these agency types.
    Only(&'static [AgencyType]),
}

use AgencyType::*;
use Callers::*;

/// Every RPC of `himaya.v1`, by path; `Service/*` covers a whole service. An RPC missing
/// here is refused to everyone (default deny); a test checks that every RPC of the
/// contracts has its rule.
pub const RULES: &[(&str, Callers)] = &[
    ("/himaya.v1.Intake/SubmitSchoolReferral", Only(&[School])),
    (
        "/himaya.v1.Intake/EscalateHotlineCall",
        Only(&[EmergencyLine]),
    ),
    // Which source kinds each agency type may claim is checked by the handler.
    ("/himaya.v1.Intake/SubmitAgencyReferral", AnyAgency),
    // A case as the caller may see it: the handler checks the caller's part in the case.
    ("/himaya.v1.Cases/GetCase", AnyAgency),
    // Aggregates, where the sharing policy has a statistics rule for the caller's type.
    ("/himaya.v1.Cases/GetStatistics", AnyAgency),
    // Refusals of break-glass are logged in the disclosure log, so they reach the handler.
    ("/himaya.v1.Cases/BreakGlass", AnyAgency),
    // The cases the caller has a part in, each through the redactor.
    ("/himaya.v1.Cases/ExportCases", AnyAgency),
    // The caller's own withdrawal notices.
    ("/himaya.v1.Cases/ListNotices", AnyAgency),
    ("/himaya.v1.Cases/AcknowledgeNotice", AnyAgency),
    // The case-owning ministry's work, staff, consents, duplicates and oversight; the
    // handler checks each case named is in its area.
    ("/himaya.v1.CaseWork/*", Only(&[SocialAffairs])),
    ("/himaya.v1.Staff/*", Only(&[SocialAffairs])),
    ("/himaya.v1.Consents/*", Only(&[SocialAffairs])),
    ("/himaya.v1.Duplicates/*", Only(&[SocialAffairs])),
    ("/himaya.v1.Oversight/*", Only(&[SocialAffairs])),
    (
        "/himaya.v1.ServiceReferrals/CreateServiceReferral",
        Only(&[SocialAffairs]),
    ),
    // Party to the referral (either side): checked by the handler.
    (
        "/himaya.v1.ServiceReferrals/UpdateServiceReferral",
        AnyAgency,
    ),
    ("/himaya.v1.ServiceReferrals/GetServiceReferral", AnyAgency),
    (
        "/himaya.v1.ServiceReferrals/ListServiceReferrals",
        AnyAgency,
    ),
    // The directory and the service map are public to agencies; a service is changed
    // only by its own agency (checked by the handler).
    // The directory's agencies are changed only by the hub's administrators: the handler
    // also checks the ministry covers every governorate.
    ("/himaya.v1.Directory/PutAgency", Only(&[SocialAffairs])),
    (
        "/himaya.v1.Directory/SetAgencyStatus",
        Only(&[SocialAffairs]),
    ),
    // So are enrolment codes and certificates.
    (
        "/himaya.v1.Directory/CreateEnrolment",
        Only(&[SocialAffairs]),
    ),
    (
        "/himaya.v1.Directory/ListCertificates",
        Only(&[SocialAffairs]),
    ),
    (
        "/himaya.v1.Directory/RevokeCertificate",
        Only(&[SocialAffairs]),
    ),
    ("/himaya.v1.Directory/*", AnyAgency),
    // Enrol is answered before any agency is proven (the one-time code names it; the
    // door lets it through without a certificate); Renew with the current certificate.
    ("/himaya.v1.Enrolment/*", AnyAgency),
    // The disclosure log: the handler applies the scope (a social-affairs agency covering
    // every governorate reads it whole, any other agency only the entries to itself).
    ("/himaya.v1.Audit/*", AnyAgency),
];

/// Which of a person's roles may make a call, when the web front acts for a person: on
/// top of the agency's rule above, a person needs one role listed for the RPC. First
/// match wins; an RPC missing here is refused to every person (it is for agencies'
/// systems: exports, notices), and a test checks every RPC of the contracts is decided.
pub const PERSON_RULES: &[(&str, &[&str])] = &[
    (
        "/himaya.v1.Intake/SubmitSchoolReferral",
        &["school_officer", "committee_member"],
    ),
    (
        "/himaya.v1.Intake/EscalateHotlineCall",
        &["hotline_operator"],
    ),
    ("/himaya.v1.Intake/SubmitAgencyReferral", REFERRERS),
    // A case through the redactor: the policy and, for casework, the person's own cases
    // (checked by the handler).
    ("/himaya.v1.Cases/GetCase", REFERRERS),
    ("/himaya.v1.Cases/GetStatistics", &["supervisor", "auditor"]),
    (
        "/himaya.v1.Cases/BreakGlass",
        &["hotline_operator", "caseworker", "supervisor"],
    ),
    ("/himaya.v1.Cases/ExportCases", &[]),
    (
        "/himaya.v1.Cases/ListNotices",
        &["agency_staff", "supervisor"],
    ),
    (
        "/himaya.v1.Cases/AcknowledgeNotice",
        &["agency_staff", "supervisor"],
    ),
    // Accounts: an agency's administrator registers its caseworkers and supervisors.
    ("/himaya.v1.Staff/AddStaff", &["admin"]),
    // A supervisor's own moves.
    ("/himaya.v1.CaseWork/AssignCase", &["supervisor"]),
    ("/himaya.v1.Oversight/ListBreakGlass", &["supervisor"]),
    ("/himaya.v1.Oversight/ReviewBreakGlass", &["supervisor"]),
    ("/himaya.v1.Duplicates/LinkCases", &["supervisor"]),
    ("/himaya.v1.Duplicates/MergeCases", &["supervisor"]),
    (
        "/himaya.v1.Oversight/GetIndicators",
        &["supervisor", "auditor"],
    ),
    // Working a case: its caseworker, or their supervisor (checked by the handler).
    ("/himaya.v1.CaseWork/*", &["caseworker", "supervisor"]),
    ("/himaya.v1.Consents/*", &["caseworker", "supervisor"]),
    (
        "/himaya.v1.Duplicates/FindDuplicates",
        &["caseworker", "supervisor"],
    ),
    (
        "/himaya.v1.ServiceReferrals/CreateServiceReferral",
        &["caseworker", "supervisor"],
    ),
    (
        "/himaya.v1.ServiceReferrals/*",
        &["agency_staff", "caseworker", "supervisor"],
    ),
    ("/himaya.v1.Directory/PutAgency", &["admin"]),
    ("/himaya.v1.Directory/SetAgencyStatus", &["admin"]),
    ("/himaya.v1.Directory/CreateEnrolment", &["admin"]),
    ("/himaya.v1.Directory/ListCertificates", &["admin"]),
    ("/himaya.v1.Directory/RevokeCertificate", &["admin"]),
    // Agencies' systems only.
    ("/himaya.v1.Enrolment/*", &[]),
    ("/himaya.v1.Directory/UpsertService", &["admin"]),
    ("/himaya.v1.Directory/RemoveService", &["admin"]),
    ("/himaya.v1.Directory/*", ALL_ROLES),
    // The disclosure log and its chain: auditors only (the scope is their agency's).
    ("/himaya.v1.Audit/*", &["auditor"]),
];

/// Everyone who works with cases or refers children (not auditors or administrators).
const REFERRERS: &[&str] = &[
    "school_officer",
    "committee_member",
    "hotline_operator",
    "caseworker",
    "supervisor",
    "agency_staff",
];

/// Every role a person can hold.
const ALL_ROLES: &[&str] = himaya_settings::PERSON_ROLES;

/// The roles that may make the call at `path` as a person; `None` when no rule says.
pub fn person_rule_for(path: &str) -> Option<&'static [&'static str]> {
    PERSON_RULES.iter().find_map(|(pattern, roles)| {
        let hit = match pattern.strip_suffix('*') {
            Some(service) => path.starts_with(service),
            None => *pattern == path,
        };
        hit.then_some(*roles)
    })
}

/// The rule for a request path; `None` for a `himaya.v1` path without one.
pub fn rule_for(path: &str) -> Option<Callers> {
    RULES.iter().find_map(|(pattern, callers)| {
        let hit = match pattern.strip_suffix('*') {
            Some(service) => path.starts_with(service),
            None => *pattern == path,
        };
        hit.then_some(*callers)
    })
}

/// A tower layer putting [`Door`] in front of every gRPC service.
#[derive(Clone)]
pub struct GatewayLayer {
    settings: Arc<Settings>,
    admission: Arc<Admission>,
    metrics: Arc<himaya_metrics::Metrics>,
    methods: Arc<red::Methods>,
}

impl GatewayLayer {
    /// The door, counting every call in `metrics` (gRPC RED, intake refusals).
    pub fn new(settings: Arc<Settings>, metrics: Arc<himaya_metrics::Metrics>) -> Self {
        let admission = Arc::new(Admission::new(&settings.limits));
        GatewayLayer {
            settings,
            admission,
            metrics,
            methods: Arc::new(red::Methods::new()),
        }
    }
}

impl<S> tower_layer::Layer<S> for GatewayLayer {
    type Service = Door<S>;

    fn layer(&self, inner: S) -> Door<S> {
        Door {
            inner,
            settings: self.settings.clone(),
            admission: self.admission.clone(),
            metrics: self.metrics.clone(),
            methods: self.methods.clone(),
        }
    }
}

/// The service wrapping the hub's gRPC routes.
#[derive(Clone)]
pub struct Door<S> {
    inner: S,
    settings: Arc<Settings>,
    admission: Arc<Admission>,
    metrics: Arc<himaya_metrics::Metrics>,
    methods: Arc<red::Methods>,
}

/// How many intake calls the hub works on at once, in two lanes: routine referrals, and
/// hotline escalations, whose lane routine work cannot take. Past a lane's bound a call
/// is refused at once (RESOURCE_EXHAUSTED with a retry hint), never queued: a queue in
/// front of a saturated hub only makes every caller wait longer, the urgent ones too.
/// (Intake itself refuses a routine referral the same way while the backlog behind it is
/// over `limits.backlog_max_messages`: see the cases service's `backlog.rs`.)
pub struct Admission {
    routine: Arc<tokio::sync::Semaphore>,
    urgent: Arc<tokio::sync::Semaphore>,
    retry_after: std::time::Duration,
    /// Refusals so far, and when one was last logged (a log line a second at most).
    shed: std::sync::atomic::AtomicU64,
    logged_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// Which lane an RPC is admitted through; `None`: not bounded here.
fn lane(path: &str) -> Option<Lane> {
    match path {
        "/himaya.v1.Intake/EscalateHotlineCall" => Some(Lane::Urgent),
        "/himaya.v1.Intake/SubmitSchoolReferral" | "/himaya.v1.Intake/SubmitAgencyReferral" => {
            Some(Lane::Routine)
        }
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Routine,
    Urgent,
}

impl Admission {
    pub fn new(limits: &himaya_settings::ServerLimits) -> Admission {
        Admission {
            routine: Arc::new(tokio::sync::Semaphore::new(limits.intake_in_flight)),
            urgent: Arc::new(tokio::sync::Semaphore::new(limits.urgent_in_flight)),
            retry_after: limits.busy_retry_after(),
            shed: Default::default(),
            logged_at: Default::default(),
        }
    }

    /// A place in the call's lane, held until its answer is written; a refusal when
    /// the lane is full.
    #[allow(clippy::result_large_err)]
    fn admit(&self, path: &str) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, Status> {
        let Some(lane) = lane(path) else {
            return Ok(None);
        };
        let sem = match lane {
            Lane::Routine => &self.routine,
            Lane::Urgent => &self.urgent,
        };
        match sem.clone().try_acquire_owned() {
            Ok(permit) => Ok(Some(permit)),
            Err(_) => {
                let shed = self.shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let mut at = self.logged_at.lock().unwrap_or_else(|p| p.into_inner());
                if at.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(1)) {
                    *at = Some(std::time::Instant::now());
                    tracing::warn!(rpc = path, lane = ?lane, shed_so_far = shed, "intake call refused: the hub is at its bound (limits.intake_in_flight / urgent_in_flight)");
                }
                Err(himaya_proto::status::busy(self.retry_after))
            }
        }
    }

    /// Calls refused so far.
    pub fn shed(&self) -> u64 {
        self.shed.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl<S, B> tower_service::Service<Request<B>> for Door<S>
where
    S: tower_service::Service<Request<B>, Response = Response<BoxBody>>,
    S::Future: Send + 'static,
{
    type Response = Response<BoxBody>;
    type Error = S::Error;
    type Future = Either<
        future::BoxFuture<'static, Result<Response<BoxBody>, S::Error>>,
        Ready<Result<Response<BoxBody>, S::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The call's span: the referral's trace starts (or continues) here.
        let rpc = self.methods.of(req.uri().path()).clone();
        let span = crate::trace::server_span(&req, &rpc);
        let _in_span = span.enter();
        let lang = lang_of(req.headers());
        let call = red::Call::new(self.metrics.clone(), rpc);
        let admitted =
            admit(&self.settings, &mut req).and_then(|()| self.admission.admit(req.uri().path()));
        if let Err(refusal) = &admitted {
            if req.uri().path().starts_with("/himaya.v1.Intake/") {
                self.metrics
                    .intake
                    .refused(if refusal.code() == Code::ResourceExhausted {
                        "overload"
                    } else {
                        "unauthorized"
                    });
            }
        }
        match admitted {
            Ok(permit) => {
                let max = self.settings.grpc.max_message_bytes;
                let deadline = self.settings.limits.request_timeout();
                let answer = self.inner.call(req);
                Either::Left(Box::pin(crate::trace::within(span.clone(), async move {
                    let answered = match tokio::time::timeout(deadline, answer).await {
                        Ok(answered) => answered.map(|mut r| {
                            crate::errors::mend(r.headers_mut(), lang, max);
                            r
                        }),
                        // The call is dropped (its transaction rolls back): said so, in
                        // the caller's language.
                        Err(_) => {
                            let said = status(
                                Code::DeadlineExceeded,
                                &msg!("gateway-timeout", timeout_ms = deadline.as_millis() as u64),
                            );
                            Ok(localize(&said, lang).unwrap_or(said).into_http())
                        }
                    };
                    drop(permit);
                    crate::trace::record_status(&answered);
                    answered.map(|r| call.answered(r))
                })))
            }
            Err(refusal) => {
                let refusal = localize(&refusal, lang).unwrap_or(refusal);
                span.record("rpc.grpc.status_code", refusal.code() as i64);
                Either::Right(future::ready(Ok(call.answered(refusal.into_http()))))
            }
        }
    }
}

fn lang_of(headers: &http::HeaderMap) -> Lang {
    Lang::from_header(
        headers
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    )
}

/// Authenticates the caller and checks the RPC's rule; on success the request carries
/// the proven agency in [`AGENCY_HEADER`].
// A refusal is answered at once as this very Status; boxing it would buy nothing.
#[allow(clippy::result_large_err)]
fn admit<B>(settings: &Settings, req: &mut Request<B>) -> Result<(), Status> {
    let path = req.uri().path().to_owned();
    // Health checks and reflection are open (probes, grpcurl); unknown services fall
    // through to the router's UNIMPLEMENTED.
    if !path.starts_with("/himaya.v1.") {
        forget_person(req.headers_mut());
        req.headers_mut().remove(AGENCY_HEADER);
        return Ok(());
    }
    if path == ENROL {
        // The one-time code in the request names the agency (the handler checks it); no
        // one's claim or person passes through.
        forget_person(req.headers_mut());
        req.headers_mut().remove(AGENCY_HEADER);
        return Ok(());
    }
    let claimed = req
        .headers()
        .get(AGENCY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Only the web component (or development identity) may name the person acting;
    // from anyone else the header is dropped before a handler sees it.
    let mut from_web = settings.grpc.tls.is_none();
    let agency_id = if settings.grpc.tls.is_some() {
        let certs = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|i| i.peer_certs());
        let Some(leaf) = certs.as_ref().and_then(|c| c.first()) else {
            tracing::info!(rpc = %path, "call refused: no client certificate");
            return Err(status(
                Code::Unauthenticated,
                &msg!("gateway-no-certificate"),
            ));
        };
        if is_web_component(leaf) && claimed.is_none() && path == PUBLIC_SERVICE_MAP {
            // The community's page of the service map: public data, asked by no agency.
            forget_person(req.headers_mut());
            return Ok(());
        }
        if is_web_component(leaf) {
            // The web front acts for people of any agency: it says which, and who.
            let Some(id) =
                claimed.filter(|id| settings.agencies.get(id).is_some_and(|a| !a.suspended))
            else {
                return Err(status(
                    Code::Unauthenticated,
                    &msg!("gateway-web-names-no-agency"),
                ));
            };
            from_web = true;
            id
        } else {
            let id = certified_agency(settings, leaf, claimed.as_deref()).map_err(|e| {
                tracing::warn!(rpc = %path, reason = e.id(), "call refused: the certificate proves no agency");
                status(Code::Unauthenticated, &e)
            })?;
            if settings.agencies.is_revoked(|| fingerprint(leaf)) {
                tracing::warn!(rpc = %path, agency = %id, "call refused: the certificate is revoked");
                return Err(status(
                    Code::Unauthenticated,
                    &msg!("gateway-certificate-revoked"),
                ));
            }
            id
        }
    } else {
        // Development identity (validated at start: loopback only).
        if claimed.is_none() && path == PUBLIC_SERVICE_MAP {
            return Ok(());
        }
        claimed.ok_or_else(|| CallerError::Unidentified.status())?
    };
    let Some(agency) = settings.agencies.get(&agency_id) else {
        // The claimed value is the caller's, not ours: neither logged nor echoed.
        tracing::warn!(rpc = %path, claimed_len = agency_id.len(), "call refused: the claimed agency is not in the directory");
        return Err(CallerError::Unknown.status());
    };
    if agency.suspended {
        // Cut off by an administrator: refused like an unknown caller, at once on every
        // replica that has followed the directory's change.
        tracing::warn!(rpc = %path, agency = %agency_id, "call refused: the agency is suspended");
        return Err(status(
            Code::Unauthenticated,
            &msg!("gateway-agency-suspended"),
        ));
    }
    let allowed = match rule_for(&path) {
        Some(AnyAgency) => true,
        Some(Only(types)) => types.contains(&agency.agency_type),
        None => false,
    };
    if !allowed {
        tracing::warn!(rpc = %path, agency = %agency_id, agency_type = %agency.agency_type, "call refused: not allowed for this agency type");
        return Err(status(
            Code::PermissionDenied,
            &msg!(
                "gateway-agency-type-may-not-call",
                agency_type = agency.agency_type.to_string(),
                rpc = path
            ),
        ));
    }
    let value =
        HeaderValue::from_str(&agency_id).map_err(|_| status(Code::Internal, &msg!("internal")))?;
    req.headers_mut().insert(AGENCY_HEADER, value);
    if !from_web {
        forget_person(req.headers_mut());
        return Ok(());
    }
    let person = req
        .headers()
        .get(PERSON_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|p| p.starts_with("psn_"));
    let Some(person) = person else {
        forget_person(req.headers_mut());
        if settings.grpc.tls.is_some() {
            // The web front acts only for people: a call of its own names nobody.
            tracing::warn!(rpc = %path, "call refused: the web component named no person");
            return Err(status(
                Code::Unauthenticated,
                &msg!("gateway-web-names-no-person"),
            ));
        }
        // Development identity: a system's call (the CLI), which names no person.
        return Ok(());
    };
    let roles = req
        .headers()
        .get(ROLES_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let allowed = person_rule_for(&path).unwrap_or(&[]);
    if !roles
        .split(',')
        .map(str::trim)
        .any(|r| allowed.contains(&r))
    {
        tracing::warn!(rpc = %path, agency = %agency_id, person, "call refused: not allowed for this person's roles");
        return Err(status(
            Code::PermissionDenied,
            &if allowed.is_empty() {
                msg!("gateway-systems-only", rpc = path)
            } else {
                msg!(
                    "gateway-role-may-not-call",
                    rpc = path,
                    roles = allowed.join(", ")
                )
            },
        ));
    }
    Ok(())
}

/// Removes the person acting and their roles: only the web front may say them.
fn forget_person(headers: &mut http::HeaderMap) {
    headers.remove(PERSON_HEADER);
    headers.remove(ROLES_HEADER);
}

/// The one call the web front makes for no agency: the public page of the service map
/// (docs/domain.md: service maps are shared with the community). It reads no case.
const PUBLIC_SERVICE_MAP: &str = "/himaya.v1.Directory/FindServices";

/// The one call made before an agency has a certificate: its enrolment.
const ENROL: &str = "/himaya.v1.Enrolment/Enrol";

/// A certificate's SHA-256 (of its DER): what the directory revokes.
pub fn fingerprint(cert: &CertificateDer<'_>) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(cert.as_ref()).into()
}

/// Whether `leaf` is the web component's certificate.
fn is_web_component(leaf: &CertificateDer<'_>) -> bool {
    let Ok(cert) = webpki::EndEntityCert::try_from(leaf) else {
        return false;
    };
    ServerName::try_from(WEB_COMPONENT_NAME)
        .map(|n| cert.verify_is_valid_for_subject_name(&n).is_ok())
        .unwrap_or(false)
}

/// The directory agency that `leaf` certifies. The certificate must name exactly one
/// agency of the directory and no wildcard (a wildcard or a second name would let one key
/// act as several agencies); a claim must be that agency. The names are read from the
/// certificate and each looked up by id (no scan of the directory: the cost is the same
/// with ten agencies or ten thousand), then the one found is verified by webpki.
pub fn certified_agency(
    settings: &Settings,
    leaf: &CertificateDer<'_>,
    claimed: Option<&str>,
) -> Result<String, Msg> {
    let cert = webpki::EndEntityCert::try_from(leaf)
        .map_err(|_| msg!("gateway-certificate-unreadable"))?;
    let agencies = settings.agencies.snapshot();
    let mut one: Option<&str> = None;
    for name in cert.valid_dns_names() {
        if name.starts_with('*') {
            return Err(msg!("gateway-certificate-wildcard"));
        }
        let Some(id) = name
            .strip_suffix(AGENCY_NAME_SUFFIX)
            .filter(|id| !id.contains('.') && agencies.contains_key(*id))
        else {
            continue;
        };
        if one.is_some_and(|o| o != id) {
            return Err(msg!("gateway-certificate-not-one-agency"));
        }
        one = Some(id);
    }
    let verified = one.filter(|id| {
        ServerName::try_from(agency_certificate_name(id))
            .map(|n| cert.verify_is_valid_for_subject_name(&n).is_ok())
            .unwrap_or(false)
    });
    let Some(one) = verified else {
        return Err(match claimed {
            Some(_) => msg!("gateway-certificate-not-the-claimed"),
            None => msg!("gateway-certificate-not-one-agency"),
        });
    };
    match claimed {
        // The claimed value is the caller's: not repeated back.
        Some(id) if id != one => Err(msg!("gateway-certificate-not-the-claimed")),
        _ => Ok(one.to_owned()),
    }
}

/// What follows the agency's id in its certificate's name (`<id>.agency.himaya`).
const AGENCY_NAME_SUFFIX: &str = ".agency.himaya";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_whole_services_and_single_rpcs() {
        assert!(matches!(
            rule_for("/himaya.v1.CaseWork/CloseCase"),
            Some(Only(&[SocialAffairs]))
        ));
        assert!(matches!(
            rule_for("/himaya.v1.Intake/SubmitSchoolReferral"),
            Some(Only(&[School]))
        ));
        assert!(rule_for("/himaya.v1.Cases/Unknown").is_none());
        assert!(rule_for("/himaya.v1.CaseWorkX/CloseCase").is_none());
    }

    #[test]
    fn a_persons_roles_decide_on_top_of_the_agencys() {
        let may = |path: &str, role: &str| person_rule_for(path).unwrap_or(&[]).contains(&role);
        assert!(may("/himaya.v1.CaseWork/AssignCase", "supervisor"));
        assert!(!may("/himaya.v1.CaseWork/AssignCase", "caseworker"));
        assert!(may("/himaya.v1.CaseWork/CloseCase", "caseworker"));
        assert!(!may("/himaya.v1.CaseWork/CloseCase", "school_officer"));
        assert!(!may("/himaya.v1.CaseWork/CloseCase", "auditor"));
        assert!(may(
            "/himaya.v1.Intake/EscalateHotlineCall",
            "hotline_operator"
        ));
        assert!(!may(
            "/himaya.v1.Intake/EscalateHotlineCall",
            "school_officer"
        ));
        assert!(!may("/himaya.v1.Cases/ExportCases", "supervisor"));
        assert!(may("/himaya.v1.Directory/FindServices", "auditor"));
        assert!(!may("/himaya.v1.Directory/UpsertService", "agency_staff"));
        // The ministry's other services: each RPC with the roles it had in CaseWork.
        assert!(may("/himaya.v1.Staff/AddStaff", "admin"));
        assert!(!may("/himaya.v1.Staff/AddStaff", "supervisor"));
        assert!(may("/himaya.v1.Consents/GrantConsent", "caseworker"));
        assert!(!may("/himaya.v1.Consents/GrantConsent", "auditor"));
        assert!(may("/himaya.v1.Duplicates/FindDuplicates", "caseworker"));
        assert!(!may("/himaya.v1.Duplicates/MergeCases", "caseworker"));
        assert!(may("/himaya.v1.Oversight/GetIndicators", "auditor"));
        assert!(!may("/himaya.v1.Oversight/ReviewBreakGlass", "caseworker"));
        for service in ["Staff", "Consents", "Duplicates", "Oversight"] {
            assert!(matches!(
                rule_for(&format!("/himaya.v1.{service}/Any")),
                Some(Only(&[SocialAffairs]))
            ));
        }
    }
}
