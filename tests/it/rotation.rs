//! Replacing the hub's certificate and the agencies' issuing authority without a restart:
//! the files under `grpc.tls` are read again when they change. During an authority's
//! overlap both are trusted (a PEM bundle), so agencies holding certificates of either
//! call on; the hub's new certificate is what the next connection gets.

use crate::helpers::*;
use himaya::dev_certs;
use himaya_proto::v1 as pb;
use tonic::transport::Channel;

/// Whether a call over `ch` goes through. A call that has no answer within 5 s does
/// not: a CI run once waited on one for good (no connection to the hub left open), and
/// `eventually` tries again anyway.
async fn calls(ch: Result<Channel, tonic::transport::Error>) -> bool {
    let Ok(ch) = ch else {
        return false;
    };
    let mut client = pb::directory_client::DirectoryClient::new(ch);
    let call = client.get_agency(pb::GetAgencyRequest {
        agency_id: "mosa-cairo".into(),
    });
    matches!(
        tokio::time::timeout(std::time::Duration::from_secs(5), call).await,
        Ok(Ok(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hubs_certificate_and_the_agencies_authority_are_replaced_while_it_runs() {
    let mut env = TestEnv::new(None).await;
    let dir = std::env::temp_dir().join(format!("{}-certs", env.db_name));
    let old = secure(&mut env.settings, &dir);
    let hub = env.start().await;
    let addr = hub.grpc_addr;
    // The new authority's set: its own CA, a hub certificate and a school's.
    let new = dev_certs::generate(&dir.join("new"), ["school-cairo-alnour"], 1).unwrap();
    let school = Some("school-cairo-alnour");

    // Before: a certificate of the new authority is refused; the old one calls.
    assert!(!calls(tls_channel(addr, &old, &new, school).await).await);
    assert!(calls(tls_channel(addr, &old, &old, school).await).await);

    // The overlap: both authorities in client_ca_file.
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(old.ca()).unwrap(),
        std::fs::read_to_string(new.ca()).unwrap()
    );
    std::fs::write(old.ca(), bundle).unwrap();
    eventually(
        15,
        "a certificate of the new authority is accepted",
        || async {
            calls(tls_channel(addr, &old, &new, school).await)
                .await
                .then_some(())
        },
    )
    .await;
    assert!(
        calls(tls_channel(addr, &old, &old, school).await).await,
        "the old authority's certificates call on during the overlap"
    );

    // The hub's own certificate replaced: a client trusting only the new authority for
    // the server reaches it once the files are read again.
    assert!(!calls(tls_channel(addr, &new, &new, school).await).await);
    let ((old_cert, old_key), (new_cert, new_key)) = (old.pair("hub"), new.pair("hub"));
    std::fs::copy(new_key, old_key).unwrap();
    std::fs::copy(new_cert, old_cert).unwrap();
    eventually(15, "the hub presents its new certificate", || async {
        calls(tls_channel(addr, &new, &new, school).await)
            .await
            .then_some(())
    })
    .await;

    // The old authority withdrawn: its certificates are refused from then on.
    std::fs::copy(new.ca(), old.ca()).unwrap();
    eventually(
        15,
        "the old authority's certificates are refused",
        || async { (!calls(tls_channel(addr, &new, &old, school).await).await).then_some(()) },
    )
    .await;
    assert!(calls(tls_channel(addr, &new, &new, school).await).await);
    hub.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
