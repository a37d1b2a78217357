//! Agencies' certificates from the hub's own issuing authority, over real mutual TLS: an
//! administrator makes a one-time enrolment code, the agency's system enrols with a
//! certificate signing request for its own key and calls with what it got, renews with
//! its current certificate, and a revoked certificate is refused on its next call within
//! seconds while the renewed one goes on working.

use std::time::Instant;

use crate::helpers::*;
use himaya::dev_certs::DevCerts;
use himaya_proto::v1 as pb;
use tonic::transport::Channel;
use tonic::Code;

fn directory(ch: &Channel) -> pb::directory_client::DirectoryClient<Channel> {
    pb::directory_client::DirectoryClient::new(ch.clone())
}

fn enrolment(ch: &Channel) -> pb::enrolment_client::EnrolmentClient<Channel> {
    pb::enrolment_client::EnrolmentClient::new(ch.clone())
}

/// A new key of the agency's and a request for a certificate naming `names` (what the
/// hub will not grant as asked: it names the enrolling agency only).
fn key_and_request(names: &[&str]) -> (rcgen::KeyPair, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, csr)
}

/// Keeps an issued certificate and its key where [`tls_channel`] reads a pair.
fn keep(dir: &DevCerts, name: &str, issued: &pb::IssuedCertificate, key: &rcgen::KeyPair) {
    let (cert, key_file) = dir.pair(name);
    std::fs::write(cert, &issued.certificate_pem).unwrap();
    std::fs::write(key_file, key.serialize_pem()).unwrap();
}

async fn calls(ch: &Channel) -> Result<(), tonic::Status> {
    directory(ch)
        .get_agency(pb::GetAgencyRequest {
            agency_id: "mosa-cairo".into(),
        })
        .await
        .map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agency_enrols_renews_and_a_revoked_certificate_is_refused() {
    let mut env = TestEnv::new(None).await;
    let dir = std::env::temp_dir().join(format!("{}-certs", env.db_name));
    let certs = secure(&mut env.settings, &dir);
    env.settings.grpc.issuer = Some(certs.issuer());
    let hub = env.start().await;
    let issued_dir = DevCerts {
        dir: dir.join("issued"),
    };
    std::fs::create_dir_all(&issued_dir.dir).unwrap();
    let channel = |client: &DevCerts, name: Option<&str>| {
        let (addr, trusted, client, name) = (
            hub.grpc_addr,
            certs.clone(),
            client.clone(),
            name.map(str::to_owned),
        );
        async move {
            tls_channel(addr, &trusted, &client, name.as_deref())
                .await
                .expect("TLS channel")
        }
    };
    let admin = channel(&certs, Some("mosa-cairo")).await;
    let anonymous = channel(&certs, None).await;

    // The agency joins the directory, without any certificate yet.
    directory(&admin)
        .put_agency(pb::PutAgencyRequest {
            agency_id: NEW_AGENCY.into(),
            agency_type: "health".into(),
            name_ar: "عيادة الأمل الجديدة".into(),
            name_en: "New Hope Clinic".into(),
            governorates: vec!["القاهرة".into()],
            ..Default::default()
        })
        .await
        .expect("added");

    // Only administrators make enrolment codes.
    let school = channel(&certs, Some("school-cairo-alnour")).await;
    let e = directory(&school)
        .create_enrolment(pb::CreateEnrolmentRequest {
            agency_id: NEW_AGENCY.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let code = directory(&admin)
        .create_enrolment(pb::CreateEnrolmentRequest {
            agency_id: NEW_AGENCY.into(),
        })
        .await
        .expect("an enrolment code")
        .into_inner()
        .code;

    // A wrong code gets nothing, and says nothing of why beyond what to do.
    let (key, csr) = key_and_request(&["mosa-cairo.agency.himaya"]);
    let e = enrolment(&anonymous)
        .enrol(pb::EnrolRequest {
            agency_id: NEW_AGENCY.into(),
            code: "0000-not-the-code".into(),
            csr_pem: csr.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    // A request that is no CSR is named.
    let e = enrolment(&anonymous)
        .enrol(pb::EnrolRequest {
            agency_id: NEW_AGENCY.into(),
            code: code.clone(),
            csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgcmVxdWVzdA==\n-----END CERTIFICATE REQUEST-----\n".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");

    // Enrolled, over TLS without a client certificate: the certificate names the clinic
    // only, though the request asked for the ministry's name.
    let first = enrolment(&anonymous)
        .enrol(pb::EnrolRequest {
            agency_id: NEW_AGENCY.into(),
            code: code.clone(),
            csr_pem: csr,
        })
        .await
        .expect("enrolled")
        .into_inner();
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(first.certificate_pem.as_bytes())
        .expect("a PEM certificate");
    // What the gateway reads in it, against a directory holding both agencies: the clinic
    // alone (a second name, the ministry's, would be refused as naming two agencies).
    let mut both = env.settings.clone();
    let model = (*both.agencies.get("health-cairo").unwrap()).clone();
    both.agencies.insert(NEW_AGENCY.into(), model);
    assert_eq!(
        himaya_gateway::certified_agency(&both, &der, None)
            .ok()
            .as_deref(),
        Some(NEW_AGENCY)
    );
    let days = (chrono::DateTime::parse_from_rfc3339(&first.not_after)
        .unwrap()
        .with_timezone(&chrono::Utc)
        - chrono::Utc::now())
    .num_days();
    assert!((89..=90).contains(&days), "{days} days");
    assert!(first.issuer_pem.contains("BEGIN CERTIFICATE"));
    // The code is spent.
    let (_, again) = key_and_request(&[]);
    let e = enrolment(&anonymous)
        .enrol(pb::EnrolRequest {
            agency_id: NEW_AGENCY.into(),
            code: code.clone(),
            csr_pem: again,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");

    keep(&issued_dir, "first", &first, &key);
    let with_first = channel(&issued_dir, Some("first")).await;
    eventually(10, "the enrolled certificate is accepted", || async {
        calls(&with_first).await.ok()
    })
    .await;

    // Renewed with the current certificate: a second one, both valid.
    let (key2, csr2) = key_and_request(&[]);
    let second = enrolment(&with_first)
        .renew(pb::RenewRequest { csr_pem: csr2 })
        .await
        .expect("renewed")
        .into_inner();
    assert_eq!(second.agency_id, NEW_AGENCY);
    assert_ne!(second.fingerprint, first.fingerprint);
    keep(&issued_dir, "second", &second, &key2);
    let with_second = channel(&issued_dir, Some("second")).await;
    calls(&with_second)
        .await
        .expect("the renewed certificate calls");

    let listed = directory(&admin)
        .list_certificates(pb::ListCertificatesRequest {
            agency_id: NEW_AGENCY.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .certificates;
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|c| c.certificate_pem.is_empty()));

    // The first is revoked: refused within seconds, the second goes on.
    let revoked = directory(&admin)
        .revoke_certificate(pb::RevokeCertificateRequest {
            fingerprint: first.fingerprint.clone(),
            reason: "compromised_key".into(),
        })
        .await
        .expect("revoked")
        .into_inner();
    assert!(!revoked.revoked_at.is_empty());
    let t = Instant::now();
    let e = eventually(10, "the revoked certificate is refused", || async {
        calls(&with_first).await.err()
    })
    .await;
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("revoked"), "{}", e.message());
    println!(
        "a revoked certificate was refused after {} ms",
        t.elapsed().as_millis()
    );
    calls(&with_second)
        .await
        .expect("the renewed certificate still calls");

    // The same from the command line an agency's operator runs: `himaya enrol` makes the
    // key, sends the request with a fresh code and keeps both files.
    let code = directory(&admin)
        .create_enrolment(pb::CreateEnrolmentRequest {
            agency_id: NEW_AGENCY.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .code;
    let cli = DevCerts {
        dir: dir.join("cli"),
    };
    std::fs::create_dir_all(&cli.dir).unwrap();
    std::fs::copy(certs.ca(), cli.ca()).unwrap();
    let (server, certs_dir) = (
        format!("https://127.0.0.1:{}", hub.grpc_addr.port()),
        cli.dir.clone(),
    );
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_himaya"))
            .args(["enrol", NEW_AGENCY, "--code", &code, "--server", &server])
            .arg("--certs")
            .arg(&certs_dir)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let with_cli = channel(&cli, Some(NEW_AGENCY)).await;
    calls(&with_cli)
        .await
        .expect("the certificate `himaya enrol` got calls");
    let _ = std::fs::remove_dir_all(&dir);
    hub.stop().await;
}
