//! The directory as data, over real mutual TLS: an administrator adds an agency while the
//! hub runs and it can call at once with its certificate and receives its deliveries; a
//! suspension cuts its calls and its webhook posts off within seconds, without a
//! restart; every change is versioned, recorded and announced on the bus; and whoever is
//! not an administrator, or sends a bad entry, is refused with a clear answer.

use std::time::{Duration, Instant};

use crate::helpers::*;
use himaya::dev_certs::DevCerts;
use himaya::hub::Hub;
use himaya_proto::v1 as pb;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

struct Secured {
    env: TestEnv,
    hub: Hub,
    certs: DevCerts,
    dir: std::path::PathBuf,
}

impl Drop for Secured {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn as_cert(s: &Secured, agency: &str) -> Channel {
    tls_channel(s.hub.grpc_addr, &s.certs, &s.certs, Some(agency))
        .await
        .expect("TLS channel")
}

fn directory(ch: &Channel) -> pb::directory_client::DirectoryClient<Channel> {
    pb::directory_client::DirectoryClient::new(ch.clone())
}

/// Whether `ch`'s agency may call the hub now (any RPC open to every agency will do).
async fn calls(ch: &Channel) -> Result<(), tonic::Status> {
    directory(ch)
        .get_agency(pb::GetAgencyRequest {
            agency_id: "mosa-cairo".into(),
        })
        .await
        .map(|_| ())
}

fn clinic(token_file: &std::path::Path, endpoint: String) -> pb::PutAgencyRequest {
    pb::PutAgencyRequest {
        agency_id: NEW_AGENCY.into(),
        expected_version: 0,
        agency_type: "health".into(),
        name_ar: "عيادة الأمل الجديدة".into(),
        name_en: "New Hope Clinic".into(),
        services: vec![
            pb::ServiceType::Health.into(),
            pb::ServiceType::Psychosocial.into(),
        ],
        governorates: vec!["القاهره".into()],
        endpoint,
        protocol: String::new(),
        inbound_token_ref: format!("file:{}", token_file.display()),
        outbound_token_ref: String::new(),
        place_codes: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_added_while_the_hub_runs_calls_and_receives_and_a_suspension_cuts_it_off() {
    let mut env = TestEnv::new(None).await;
    let dir = std::env::temp_dir().join(format!("{}-certs", env.db_name));
    let certs = secure(&mut env.settings, &dir);
    let hub = env.start().await;
    let s = Secured {
        env,
        hub,
        certs,
        dir,
    };
    let (agency, addr) = FakeAgency::start(&[]).await;
    let token_file = s.dir.join("clinic-new.token");
    let token = "clinic-new-webhook-token-0123456789abcdef";
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let admin = as_cert(&s, "mosa-cairo").await;
    let clinic_ch = as_cert(&s, NEW_AGENCY).await;

    // Not in the directory yet: its certificate, from the hub's own authority, proves
    // no agency.
    let e = calls(&clinic_ch).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    // Only administrators change the directory: a school is refused by the gateway.
    let school = as_cert(&s, "school-cairo-alnour").await;
    let e = directory(&school)
        .put_agency(clinic(&token_file, String::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // A bad entry: every field named, in the caller's language, none of its values quoted.
    let mut bad = clinic(&token_file, "ftp://clinic.example/in".into());
    bad.agency_id = "Clinic_New".into();
    bad.governorates = vec!["أطلانطس".into()];
    bad.protocol = "carrier_pigeon".into();
    bad.inbound_token_ref = "the-token-itself-0123456789".into();
    let mut req = tonic::Request::new(bad);
    req.metadata_mut()
        .insert("accept-language", "ar".parse().unwrap());
    let e = directory(&admin).put_agency(req).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let violations = e.get_details_bad_request().expect("field violations");
    let fields: Vec<&str> = violations
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "agency_id",
            "governorates[0]",
            "endpoint",
            "protocol",
            "inbound_token_ref"
        ]
    );
    let said = format!("{} {violations:?}", e.message());
    for quoted in [
        "Clinic_New",
        "أطلانطس",
        "carrier_pigeon",
        "the-token-itself",
        "ftp://",
    ] {
        assert!(!said.contains(quoted), "{quoted}: {said}");
    }
    assert!(
        e.message()
            .chars()
            .any(|c| ('\u{0600}'..='\u{06FF}').contains(&c)),
        "Arabic: {}",
        e.message()
    );

    // Added: version 1, the governorate written under its official name.
    let added = directory(&admin)
        .put_agency(clinic(&token_file, format!("http://{addr}/referrals")))
        .await
        .expect("an administrator adds an agency")
        .into_inner();
    assert_eq!(
        (added.version, added.status()),
        (1, pb::AgencyStatus::Active)
    );
    assert_eq!(added.governorates, vec!["القاهرة".to_owned()]);
    // Adding it again, or changing it from a version it is not at, is refused.
    let e = directory(&admin)
        .put_agency(clinic(&token_file, String::new()))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    let mut stale = clinic(&token_file, String::new());
    stale.expected_version = 7;
    let e = directory(&admin).put_agency(stale).await.unwrap_err();
    assert_eq!(e.code(), Code::Aborted, "{e:?}");

    // Without a restart, it can call, within the followers' second...
    let t = Instant::now();
    eventually(10, "the new agency's certificate is accepted", || async {
        calls(&clinic_ch).await.ok()
    })
    .await;
    println!(
        "an added agency could call after {} ms",
        t.elapsed().as_millis()
    );
    // ...and a referral for what it offers, where it works, reaches its system.
    let school_case = pb::intake_client::IntakeClient::new(school.clone())
        .submit_school_referral(school_request("directory-new-clinic"))
        .await
        .expect("the school refers")
        .into_inner()
        .case_id;
    eventually(20, "the new agency receives the referral", || async {
        (agency.count() > 0).then_some(())
    })
    .await;
    assert!(!school_case.is_empty());

    // Its webhook token is read from where the directory says: a post with it is
    // authenticated (and refused only for speaking another standard).
    let webhook = format!(
        "http://{}/agencies/{NEW_AGENCY}/fhir/Task",
        s.hub.webhook_addr.expect("webhooks listen")
    );
    let post = || async {
        http()
            .post(&webhook)
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(post().await, 403, "authenticated, wrong standard");

    // Suspended: its calls and its webhook posts are refused within seconds.
    let suspended = directory(&admin)
        .set_agency_status(pb::SetAgencyStatusRequest {
            agency_id: NEW_AGENCY.into(),
            expected_version: 1,
            status: pb::AgencyStatus::Suspended.into(),
            reason: "compromised_key".into(),
        })
        .await
        .expect("an administrator suspends an agency")
        .into_inner();
    assert_eq!(suspended.version, 2);
    let t = Instant::now();
    let e = eventually(10, "the suspended agency is refused", || async {
        calls(&clinic_ch).await.err()
    })
    .await;
    let cut_off = t.elapsed();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    eventually(5, "its webhook posts are refused", || async {
        (post().await == 401).then_some(())
    })
    .await;
    println!("a suspension took effect after {} ms", cut_off.as_millis());
    assert!(cut_off < Duration::from_secs(5), "{cut_off:?}");
    // An administrator cannot cut off its own agency.
    let e = directory(&admin)
        .set_agency_status(pb::SetAgencyStatusRequest {
            agency_id: "mosa-cairo".into(),
            expected_version: 1,
            status: pb::AgencyStatus::Suspended.into(),
            reason: "other".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");

    // Reactivated: it calls again.
    directory(&admin)
        .set_agency_status(pb::SetAgencyStatusRequest {
            agency_id: NEW_AGENCY.into(),
            expected_version: 2,
            status: pb::AgencyStatus::Active.into(),
            reason: "error_corrected".into(),
        })
        .await
        .expect("reactivated");
    eventually(10, "the reactivated agency calls again", || async {
        calls(&clinic_ch).await.ok()
    })
    .await;

    // Every version recorded, by whom and why; every change announced on the bus.
    let pool = s.env.pool().await;
    let history: Vec<(i64, String, String, Option<String>)> = sqlx::query_as(
        "SELECT version, status, updated_by, reason FROM directory.agency_changes
          WHERE agency_id = $1 ORDER BY version",
    )
    .bind(NEW_AGENCY)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        history,
        vec![
            (1, "active".into(), "mosa-cairo".into(), None),
            (
                2,
                "suspended".into(),
                "mosa-cairo".into(),
                Some("compromised_key".into())
            ),
            (
                3,
                "active".into(),
                "mosa-cairo".into(),
                Some("error_corrected".into())
            ),
        ]
    );
    wait_count(
        &pool,
        "SELECT count(*) FROM directory.outbox
          WHERE routing_key = 'directory.agency.changed' AND sent_at IS NOT NULL
            AND event_type = 'himaya.v1.AgencyChanged'",
        // The configuration's seven agencies, then the clinic's three versions.
        10,
        10,
        "every change published",
    )
    .await;
    // Every announcement was taken by the hub's processes (which read the directory at
    // once): nothing waits in the unrouted queue, which operators alert on.
    let bus = himaya_bus::Bus::connect(
        s.env.amqp_url(),
        himaya_bus::Topology::new(s.env.settings.bus.prefix.clone()),
    )
    .await
    .unwrap();
    let ch = bus.channel().await.unwrap();
    let unrouted = ch
        .queue_declare(
            bus.topology().unrouted_queue().as_str().into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(unrouted.message_count(), 0, "announcements left unrouted");
    bus.close().await;
    // The table holds no token, only where the token is.
    let tokens: i64 = count(
        &pool,
        &format!(
            "SELECT count(*) FROM directory.agency_changes WHERE entry::text LIKE '%{token}%'"
        ),
    )
    .await;
    assert_eq!(tokens, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_what_the_administrators_changed_and_takes_the_configurations_changes() {
    let mut env = TestEnv::new(None).await;
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let mut req = as_agency(
        "mosa-cairo",
        pb::SetAgencyStatusRequest {
            agency_id: "legal-aid-cairo".into(),
            expected_version: 1,
            status: pb::AgencyStatus::Suspended.into(),
            reason: "agreement_suspended".into(),
        },
    );
    req.metadata_mut()
        .insert("accept-language", "en".parse().unwrap());
    directory(&ch)
        .set_agency_status(req)
        .await
        .expect("suspended");
    hub.stop().await;
    // The configuration changes two agencies: the one the API suspended stays the API's,
    // the other is refreshed from the configuration.
    for id in ["legal-aid-cairo", "takaful-cairo"] {
        if let Some(a) = env.settings.agencies.get_mut(id) {
            a.name_en = format!("{id} renamed");
        }
    }
    let hub = env.start().await;
    let ch = channel(&hub).await;
    let get = |id: &'static str| {
        let ch = ch.clone();
        async move {
            directory(&ch)
                .get_agency(as_agency(
                    "mosa-cairo",
                    pb::GetAgencyRequest {
                        agency_id: id.into(),
                    },
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let legal = get("legal-aid-cairo").await;
    assert_eq!(
        (
            legal.version,
            legal.status(),
            legal.name_en.ends_with("renamed")
        ),
        (2, pb::AgencyStatus::Suspended, false)
    );
    let takaful = get("takaful-cairo").await;
    assert_eq!(
        (takaful.version, takaful.name_en.as_str()),
        (2, "takaful-cairo renamed")
    );
    // The suspended agency stays cut off after the restart.
    let e = directory(&ch)
        .get_agency(as_agency(
            "legal-aid-cairo",
            pb::GetAgencyRequest {
                agency_id: "mosa-cairo".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    hub.stop().await;
}
