//! Per-agency identity and authorization, over real mutual TLS with certificates made
//! for the test: who may connect, who a certificate proves, which agency types may call
//! each RPC of the contracts, and a sweep of every RPC that takes a case, referral or
//! break-glass id with another agency's id: PERMISSION_DENIED every time, each refusal
//! in the disclosure log. The RPCs are read from the compiled contracts, so an RPC added
//! later is swept without editing this file.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::helpers::*;
use bytes::{Buf, BufMut};
use himaya::dev_certs::{self, DevCerts};
use himaya::hub::Hub;
use himaya_gateway::{person_rule_for, rule_for, Callers};
use himaya_proto::v1 as pb;
use himaya_record::AgencyType;
use himaya_settings::AgencySettings;
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

/// Agencies added for the test: one of each type the base configuration lacks, a school
/// with no part in any case, and a social affairs directorate of another governorate.
fn extra_agencies() -> Vec<(&'static str, AgencyType, &'static str)> {
    vec![
        ("mosa-alex", AgencyType::SocialAffairs, "الإسكندرية"),
        ("school-giza-alamal", AgencyType::School, "الجيزة"),
        ("justice-cairo", AgencyType::Justice, "القاهرة"),
        ("ngo-cairo", AgencyType::Community, "القاهرة"),
    ]
}

struct Secured {
    env: TestEnv,
    hub: Hub,
    certs: DevCerts,
    _cleanup: RemoveDir,
}

/// Removes the test's certificates at the end, even after a panic.
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn secured() -> Secured {
    let mut env = TestEnv::new(None).await;
    for (id, t, gov) in extra_agencies() {
        env.settings.agencies.insert(
            id.into(),
            AgencySettings {
                agency_type: t,
                name_ar: "جهة للاختبار".into(),
                name_en: "Test agency".into(),
                services: vec![],
                governorates: vec![gov.into()],
                endpoint: None,
                protocol: Default::default(),
                inbound_token: None,
                outbound_token: None,
                login_user: None,
                login_password: None,
                place_codes: Default::default(),
                poll_interval_ms: None,
                suspended: false,
            },
        );
    }
    // The sweep below needs a withdrawal notice addressed to the owning ministry, which
    // only a read resting on the consent produces: the deployment that asks consent of
    // every agency (by default the ministry reads on its legal mandate).
    env.settings.consent.owner_reads_by_legal_obligation = false;
    let dir = std::env::temp_dir().join(format!("{}-certs", env.db_name));
    let certs = secure(&mut env.settings, &dir);
    let hub = env.start().await;
    Secured {
        env,
        hub,
        certs,
        _cleanup: RemoveDir(dir),
    }
}

/// A channel to the hub presenting `agency`'s certificate from `certs` (none: no client
/// certificate).
async fn tls(
    s: &Secured,
    certs: &DevCerts,
    agency: Option<&str>,
) -> Result<Channel, tonic::transport::Error> {
    tls_channel(s.hub.grpc_addr, &s.certs, certs, agency).await
}

async fn as_cert(s: &Secured, agency: &str) -> Channel {
    tls(s, &s.certs, Some(agency)).await.expect("TLS channel")
}

fn read_case(case_id: &str) -> pb::GetCaseRequest {
    pb::GetCaseRequest {
        case_id: case_id.into(),
        purpose: pb::Purpose::ServiceProvision.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_proves_the_calling_agency() {
    let s = secured().await;
    let school = as_cert(&s, "school-cairo-alnour").await;

    // The certificate alone identifies the school: no header needed.
    let submitted = pb::intake_client::IntakeClient::new(school.clone())
        .submit_school_referral(school_request("by-certificate"))
        .await
        .expect("a school's certificate submits a school referral")
        .into_inner();

    // A header claiming another agency does not beat the certificate.
    let claim = as_agency(
        "mosa-cairo",
        pb::ListConsentsRequest {
            case_id: submitted.case_id.clone(),
        },
    );
    let e = pb::consents_client::ConsentsClient::new(school.clone())
        .list_consents(claim)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // The claim is refused without repeating the caller's value back.
    assert!(
        e.message()
            .contains("not the certificate of the agency named in x-himaya-agency"),
        "{}",
        e.message()
    );
    assert!(!e.message().contains("mosa-cairo"), "{}", e.message());

    // No client certificate: health answers (probes), the contracts do not.
    let anonymous = tls(&s, &s.certs, None)
        .await
        .expect("TLS without a client certificate");
    let e = pb::cases_client::CasesClient::new(anonymous.clone())
        .get_case(as_agency("mosa-cairo", read_case(&submitted.case_id)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let health = tonic_health::pb::health_client::HealthClient::new(anonymous)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health is open without a certificate");
    assert_eq!(health.into_inner().status, 1, "SERVING");

    // A certificate for mosa-cairo from another authority is refused by TLS itself.
    let rogue_dir = s.certs.dir.join("rogue");
    let rogue = dev_certs::generate(&rogue_dir, ["mosa-cairo"], 1).unwrap();
    let refused = match tls(&s, &rogue, Some("mosa-cairo")).await {
        Err(_) => true,
        Ok(ch) => pb::cases_client::CasesClient::new(ch)
            .get_case(read_case(&submitted.case_id))
            .await
            .is_err(),
    };
    assert!(
        refused,
        "a certificate from a foreign CA must not reach the hub"
    );

    // One key never acts as several agencies: a wildcard or a second agency's name is
    // refused, with or without a claim.
    for (file, said) in [("wildcard", "wildcard"), ("twin", "exactly one agency")] {
        let ch = tls(&s, &s.certs, Some(file)).await.expect("TLS channel");
        for claim in [None, Some("health-cairo")] {
            let mut req = Request::new(read_case(&submitted.case_id));
            if let Some(c) = claim {
                req.metadata_mut()
                    .insert("x-himaya-agency", c.parse().unwrap());
            }
            let e = pb::cases_client::CasesClient::new(ch.clone())
                .get_case(req)
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated, "{file} {claim:?}: {e:?}");
            assert!(e.message().contains(said), "{file}: {}", e.message());
        }
    }

    // Plain text reaches nothing.
    let plain = Channel::from_shared(format!("http://{}", s.hub.grpc_addr))
        .unwrap()
        .connect()
        .await;
    if let Ok(ch) = plain {
        let r = pb::cases_client::CasesClient::new(ch)
            .get_case(as_agency("mosa-cairo", read_case(&submitted.case_id)))
            .await;
        assert!(r.is_err(), "plain text must not reach the contracts");
    }

    // The proven owner reads the case (the door let it through to the redactor).
    let owner = as_cert(&s, "mosa-cairo").await;
    let shared = pb::cases_client::CasesClient::new(owner)
        .get_case(read_case(&submitted.case_id))
        .await
        .expect("the case-owning ministry reads its case")
        .into_inner();
    assert_eq!(shared.case_id, submitted.case_id);
    let Secured { hub, .. } = s;
    hub.stop().await;
}

/// Every method of the compiled contracts: (path, request message descriptor).
fn methods() -> Vec<(String, prost_types::DescriptorProto)> {
    let set = prost_types::FileDescriptorSet::decode(himaya_proto::FILE_DESCRIPTOR_SET)
        .expect("the compiled contracts decode");
    let mut messages = BTreeMap::new();
    for f in &set.file {
        for m in &f.message_type {
            messages.insert(format!(".{}.{}", f.package(), m.name()), m.clone());
        }
    }
    let mut out = Vec::new();
    for f in &set.file {
        for svc in &f.service {
            for m in &svc.method {
                let path = format!("/{}.{}/{}", f.package(), svc.name(), m.name());
                let input = messages[m.input_type()].clone();
                out.push((path, input));
            }
        }
    }
    assert!(out.len() >= 35, "found only {} RPCs", out.len());
    out
}

/// Sends raw protobuf bytes to any RPC.
#[derive(Debug, Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

async fn call(ch: &Channel, path: &str, body: Vec<u8>) -> Result<Vec<u8>, Status> {
    let mut grpc = tonic::client::Grpc::new(ch.clone());
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(e.to_string()))?;
    let path = http::uri::PathAndQuery::from_str(path).unwrap();
    grpc.unary(Request::new(body), path, Raw)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_refuses_the_agency_types_it_is_not_for() {
    let s = secured().await;
    // One agency of every type.
    let mut of_type: BTreeMap<&str, String> = BTreeMap::new();
    for (id, a) in s.env.settings.agencies.snapshot().iter() {
        of_type.entry(a.agency_type.as_str()).or_insert(id.clone());
    }
    assert_eq!(of_type.len(), AgencyType::ALL.len(), "{of_type:?}");
    let mut channels = BTreeMap::new();
    for id in of_type.values() {
        channels.insert(id.clone(), as_cert(&s, id).await);
    }
    let mut refused = 0;
    for (path, _) in methods() {
        let rule = rule_for(&path).unwrap_or_else(|| panic!("{path} has no rule in the gateway"));
        // Whether a person may make it, and which roles, is decided for each too.
        assert!(
            person_rule_for(&path).is_some(),
            "{path} has no person rule in the gateway"
        );
        let Callers::Only(allowed) = rule else {
            continue;
        };
        for t in AgencyType::ALL.iter().filter(|t| !allowed.contains(t)) {
            let e = call(&channels[&of_type[t.as_str()]], &path, Vec::new())
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{path} as {t}: {e:?}");
            assert!(e.message().contains(t.as_str()), "{}", e.message());
            refused += 1;
        }
    }
    // The ministry's services (CaseWork, Staff, Consents, Duplicates, Oversight: 22 RPCs),
    // school and hotline intake and referral creation: each refused to the six other
    // agency types.
    assert!(refused >= (21 + 3) * 6, "only {refused} refusals");
    let Secured { hub, .. } = s;
    hub.stop().await;
}

/// Which id a request field carries, by name. `after_case_id` (an export's cursor) is
/// not an access: an export only ever walks the caller's own cases.
fn foreign_value<'a>(field: &str, ids: &'a BTreeMap<&str, String>) -> Option<&'a String> {
    match field {
        "case_id" | "keep_case_id" => ids.get("case"),
        "other_case_id" | "merge_case_id" => ids.get("other_case"),
        "service_referral_id" => ids.get("service_referral"),
        "break_glass_id" => ids.get("break_glass"),
        "notice_id" => ids.get("notice"),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_taking_an_id_refuses_another_agencys_and_logs_it() {
    let s = secured().await;
    let owner = as_cert(&s, "mosa-cairo").await;
    let school = as_cert(&s, "school-cairo-alnour").await;
    let hotline = as_cert(&s, "hotline-16000").await;
    let mut intake = pb::intake_client::IntakeClient::new(school);
    let mut consents = pb::consents_client::ConsentsClient::new(owner.clone());

    // A Cairo case with everything hanging off it: a service referral and a break-glass.
    let case = intake
        .submit_school_referral(school_request("sweep"))
        .await
        .unwrap()
        .into_inner()
        .case_id;
    let other_case = intake
        .submit_school_referral(school_request("sweep-other"))
        .await
        .unwrap()
        .into_inner()
        .case_id;
    let planned = plan_health_action(&owner, &case).await;
    let owner_reads = owner.clone();
    let service_referral = pb::service_referrals_client::ServiceReferralsClient::new(owner)
        .create_service_referral(pb::CreateServiceReferralRequest {
            case_id: case.clone(),
            action_id: "a1".into(),
            actor: "sw-1".into(),
            ability_to_pay: pb::AbilityToPay::None.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .service_referral_id;
    let break_glass = pb::cases_client::CasesClient::new(hotline)
        .break_glass(pb::BreakGlassRequest {
            case_id: case.clone(),
            reason_code: "imminent_danger".into(),
            justification: "بلاغ عن خطر داهم على الطفلة".into(),
            actor: "op-3".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .break_glass_id
        .expect("a break-glass id");
    // The owner reads the case, then a withdrawal sends it a notice.
    pb::cases_client::CasesClient::new(owner_reads)
        .get_case(read_case(&case))
        .await
        .unwrap();
    consents
        .withdraw_consent(pb::WithdrawConsentRequest {
            case_id: case.clone(),
            expected_version: planned,
            actor: "sw-1".into(),
            consent_id: "cns_demo".into(),
        })
        .await
        .unwrap();
    let pool = s.env.pool().await;
    let notice: String = eventually(20, "a withdrawal notice", || async {
        sqlx::query_scalar("SELECT notice_id FROM cases.agency_notices LIMIT 1")
            .fetch_optional(&pool)
            .await
            .unwrap()
    })
    .await;
    let ids: BTreeMap<&str, String> = [
        ("notice", notice),
        ("case", case.clone()),
        ("other_case", other_case),
        ("service_referral", service_referral),
        ("break_glass", break_glass),
    ]
    .into_iter()
    .collect();

    // Foreign callers the gateway lets through to the handler: a social affairs
    // directorate of another governorate, and a school with no part in the case.
    let foreign_owner = as_cert(&s, "mosa-alex").await;
    let stranger = as_cert(&s, "school-giza-alamal").await;
    let mut swept = Vec::new();
    for (path, input) in methods() {
        let mut body = Vec::new();
        for f in &input.field {
            if f.r#type() != prost_types::field_descriptor_proto::Type::String {
                continue;
            }
            if let Some(v) = foreign_value(f.name(), &ids) {
                prost::encoding::string::encode(f.number() as u32, v, &mut body);
            }
        }
        if body.is_empty() {
            continue;
        }
        let ch = match rule_for(&path).unwrap() {
            Callers::Only(t) if t.contains(&AgencyType::SocialAffairs) => &foreign_owner,
            Callers::Only(t) => panic!("{path} takes an id but is only for {t:?}"),
            Callers::AnyAgency => &stranger,
        };
        let e = call(ch, &path, body).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{path}: {e:?}");
        swept.push(path);
    }
    // Every RPC of the ministry's services but staff, escalations, indicators and the
    // review list, and the case reads, break-glass and service referrals.
    for expected in [
        "/himaya.v1.CaseWork/DecideAcceptance",
        "/himaya.v1.Duplicates/MergeCases",
        "/himaya.v1.Oversight/ReviewBreakGlass",
        "/himaya.v1.Consents/WithdrawConsent",
        "/himaya.v1.Cases/GetCase",
        "/himaya.v1.Cases/BreakGlass",
        "/himaya.v1.Cases/AcknowledgeNotice",
        "/himaya.v1.ServiceReferrals/UpdateServiceReferral",
        "/himaya.v1.ServiceReferrals/ListServiceReferrals",
    ] {
        assert!(swept.iter().any(|p| p == expected), "{expected} not swept");
    }
    assert!(swept.len() >= 24, "swept only {}: {swept:?}", swept.len());

    // Lists stay within the caller's area: Alexandria's directorate sees none of
    // Cairo's numbers or escalations, and may not ask for Cairo's.
    let mut alex = pb::case_work_client::CaseWorkClient::new(foreign_owner.clone());
    let mut alex_oversight = pb::oversight_client::OversightClient::new(foreign_owner.clone());
    let own = alex_oversight
        .get_indicators(pb::GetIndicatorsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        own.cases.iter().all(|c| c.governorate == "الإسكندرية"),
        "{:?}",
        own.cases
    );
    assert!(
        own.caseloads.is_empty(),
        "another directorate's caseworkers"
    );
    let e = alex_oversight
        .get_indicators(pb::GetIndicatorsRequest {
            governorate: "القاهرة".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let escalations = alex
        .list_escalations(pb::ListEscalationsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(escalations.escalations.is_empty());

    // Every refusal is a denial in the disclosure log, and nothing was disclosed to them.
    let denials = eventually(20, "the refusals in the disclosure log", || async {
        let n = count(
            &pool,
            &format!(
                "SELECT count(*) FROM audit.log WHERE case_id = '{case}' AND decision = 'deny'
                   AND recipient IN ('mosa-alex', 'school-giza-alamal')"
            ),
        )
        .await;
        (n >= swept.len() as i64).then_some(n)
    })
    .await;
    assert_eq!(denials, swept.len() as i64, "one denial per refused call");
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM audit.log WHERE decision <> 'deny'
               AND recipient IN ('mosa-alex', 'school-giza-alamal')"
        )
        .await,
        0
    );
    let audit = himaya_audit::connect(&s.env.settings).await.unwrap();
    assert!(
        himaya_audit::verify(&audit, &[]).await.unwrap() > 0,
        "the chain verifies"
    );
    let Secured { hub, .. } = s;
    hub.stop().await;
}

/// Reads until the server closes the connection; how long that took, or None if it was
/// still open after `wait`.
async fn closed_within(
    s: &mut tokio::net::TcpStream,
    wait: std::time::Duration,
) -> Option<std::time::Duration> {
    use tokio::io::AsyncReadExt;
    let started = std::time::Instant::now();
    let mut sink = Vec::new();
    tokio::time::timeout(wait, s.read_to_end(&mut sink))
        .await
        .ok()
        .map(|_| started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_done_handshakes_and_silent_connections_are_closed() {
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    let mut env = TestEnv::new(None).await;
    env.settings.limits.handshake_timeout_ms = 500;
    env.settings.limits.idle_timeout_ms = 1_500;
    env.settings.limits.request_timeout_ms = 1_000;
    let dir = std::env::temp_dir().join(format!("{}-certs", env.db_name));
    let _cleanup = RemoveDir(dir.clone());
    let certs = secure(&mut env.settings, &dir);
    let hub = env.start().await;
    let addr = hub.grpc_addr;

    // Silent TCP, and a TLS ClientHello cut short: both closed by the handshake timeout.
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(5)).await;
    assert!(took.is_some_and(|t| t < Duration::from_secs(3)), "{took:?}");
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let took = closed_within(&mut half, Duration::from_secs(5)).await;
    assert!(took.is_some_and(|t| t < Duration::from_secs(3)), "{took:?}");

    // Many of them at once do not keep a real client out.
    let mut idle = Vec::new();
    for _ in 0..50 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let ch = tls_channel(addr, &certs, &certs, Some("health-cairo"))
        .await
        .expect("a real client gets in beside 50 idle connections");
    let mut directory = pb::directory_client::DirectoryClient::new(ch);
    directory
        .list_agencies(pb::ListAgenciesRequest::default())
        .await
        .expect("served");
    hub.stop().await;
}

/// Kills the child process when the test ends, however it ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `"<key>":"<address>"` of the first line of the hub's JSON log that says `what`.
fn address_in_log(
    lines: &std::sync::mpsc::Receiver<String>,
    what: &str,
    key: &str,
    secs: u64,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let needle = format!("\"{key}\":\"");
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        let Ok(line) = lines.recv_timeout(left) else {
            break;
        };
        if !line.contains(what) {
            continue;
        }
        if let Some(at) = line.find(&needle) {
            let rest = &line[at + needle.len()..];
            return rest[..rest.find('"').unwrap()].to_owned();
        }
    }
    panic!("no {key} in the hub's log within {secs} s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_does_not_stop_the_grpc_server() {
    use std::io::{BufRead, BufReader};
    let env = TestEnv::new(None).await;
    // The project's configuration, with development identity instead of [grpc.tls].
    let dir = std::env::temp_dir().join(format!("{}-config", env.db_name));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveDir(dir.clone());
    let project = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config");
    std::fs::copy(project.join("gazetteer.toml"), dir.join("gazetteer.toml")).unwrap();
    let base = std::fs::read_to_string(project.join("base.toml")).unwrap();
    let (head, tail) = base.split_once("\n[grpc.tls]\n").unwrap();
    let tail = &tail[tail.find("\n\n").unwrap()..];
    let base = format!("{head}{tail}").replace("dev_identity = false", "dev_identity = true");
    std::fs::write(dir.join("base.toml"), base).unwrap();
    // 200 descriptors, as a tight systemd unit would give; the hub's hard limit is the
    // same, so it cannot raise it, and its connection cap is set far above it.
    let cmd = format!("ulimit -n 200 && exec {} up", env!("CARGO_BIN_EXE_himaya"));
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .env("HIMAYA_CONFIG_DIR", &dir)
        .env("HIMAYA_ENV", "none")
        .env("HIMAYA__DATABASE__URL", &env.db_url)
        .env("HIMAYA__BUS__URL", env.amqp_url())
        .env("HIMAYA__GRPC__LISTEN", "127.0.0.1:0")
        .env("HIMAYA__CONNECTORS__WEBHOOK_LISTEN", "127.0.0.1:0")
        .env("HIMAYA__WEB__LISTEN", "127.0.0.1:0")
        .env("HIMAYA__TELEMETRY__METRICS_LISTEN", "127.0.0.1:0")
        .env("HIMAYA__LIMITS__MAX_CONNECTIONS", "5000")
        .env("HIMAYA__TELEMETRY__FORMAT", "json")
        .env("HIMAYA__AUDIT__SIGNING_KEY_FILE", dir.join("audit.key"))
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _child = Killed(child);
    let (tx, lines) = std::sync::mpsc::channel();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let all = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            all.lock().unwrap().push_str(&line);
            let _ = tx.send(line);
        }
    });
    // The composition root logs each HTTP server it binds as `listening`, by name.
    let webhooks = address_in_log(&lines, "agency webhooks listening", "addr", 120);
    let grpc = address_in_log(&lines, "himaya is up", "grpc_addr", 60);

    // 300 idle clients on the webhook port, each with a request line and a header.
    let mut idle = Vec::new();
    for _ in 0..300 {
        use tokio::io::AsyncWriteExt;
        if let Ok(mut s) = tokio::net::TcpStream::connect(&webhooks).await {
            let _ = s
                .write_all(b"POST /agencies/x/school/referrals HTTP/1.1\r\nhost: x\r\n")
                .await;
            idle.push(s);
        }
    }
    eventually(20, "the hub to run out of descriptors", || async {
        log.lock()
            .unwrap()
            .contains("out of file descriptors")
            .then_some(())
    })
    .await;
    drop(idle);

    // The gRPC server is still there once descriptors come back.
    let health = eventually(20, "the gRPC health check", || async {
        let ch = Channel::from_shared(format!("http://{grpc}"))
            .unwrap()
            .connect()
            .await
            .ok()?;
        tonic_health::pb::health_client::HealthClient::new(ch)
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
            .ok()
    })
    .await;
    assert_eq!(
        health.into_inner().status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_web_components_certificate_asserts_a_person_only_with_an_agency_and_reads_the_map_without(
) {
    let s = secured().await;
    // The public service map, through the web front under mutual TLS.
    let web = format!("http://127.0.0.1:{}", s.hub.web_addr.unwrap().port());
    let r = http()
        .get(format!("{web}/services?governorate=Cairo"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The web component's certificate with no agency claimed reaches no other RPC.
    let as_web = tls(&s, &s.certs, Some("web")).await.expect("TLS channel");
    let e = pb::directory_client::DirectoryClient::new(as_web.clone())
        .list_agencies(pb::ListAgenciesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // An agency's own certificate cannot name a person: the header is dropped, so the
    // referral records the agency's own staff reference, not the claimed person.
    let mut req = Request::new(school_request("person-claim"));
    req.metadata_mut()
        .insert("x-himaya-person", "psn_forged".parse().unwrap());
    let school = as_cert(&s, "school-cairo-alnour").await;
    pb::intake_client::IntakeClient::new(school)
        .submit_school_referral(req)
        .await
        .unwrap();
    let pool = s.env.pool().await;
    let staff: String =
        sqlx::query_scalar("SELECT record->'referral'->'source'->>'staff_ref' FROM cases.cases")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        staff, "officer-17",
        "the agency's own reference, not the forged person"
    );
    // The web component naming the school and a person: the person is recorded, when
    // their roles allow the call.
    let web_request = |roles: Option<&str>| {
        let mut req = Request::new(school_request("person-proven"));
        req.metadata_mut()
            .insert("x-himaya-agency", "school-cairo-alnour".parse().unwrap());
        req.metadata_mut()
            .insert("x-himaya-person", "psn_proven".parse().unwrap());
        if let Some(r) = roles {
            req.metadata_mut()
                .insert("x-himaya-roles", r.parse().unwrap());
        }
        req
    };
    let mut intake = pb::intake_client::IntakeClient::new(as_web.clone());
    for roles in [None, Some("caseworker,auditor")] {
        let e = intake
            .submit_school_referral(web_request(roles))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{roles:?}: {e:?}");
        assert!(e.message().contains("school_officer"), "{}", e.message());
    }
    // The web front acts only for people: a call of its own, naming an agency but no
    // person, is refused.
    let mut req = Request::new(pb::ListAgenciesRequest::default());
    req.metadata_mut()
        .insert("x-himaya-agency", "school-cairo-alnour".parse().unwrap());
    let e = pb::directory_client::DirectoryClient::new(as_web.clone())
        .list_agencies(req)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    let r = intake
        .submit_school_referral(web_request(Some("school_officer")))
        .await
        .unwrap()
        .into_inner();
    let staff: String = sqlx::query_scalar(
        "SELECT record->'referral'->'source'->>'staff_ref' FROM cases.cases WHERE case_id = $1",
    )
    .bind(&r.case_id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(staff, "psn_proven");
    s.hub.stop().await;
}
