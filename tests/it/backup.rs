//! A backup and a restore as an operator makes them (`scripts/backup`, deploy/README.md
//! "Backups"): a hub with referrals and a signed checkpoint is backed up while it runs,
//! restored into a new, empty database, and a hub started on it: `himaya audit verify`
//! passes against the checkpoints exported before, the referrals are there, and a new
//! referral flows.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use himaya_proto::v1 as pb;
use himaya_proto::v1::cases_client::CasesClient;

use super::helpers::*;

fn script(args: &[&str]) -> Output {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Command::new(root.join("scripts/backup"))
        .args(args)
        .env_remove("HIMAYA__DATABASE__URL")
        .env_remove("DATABASE_URL")
        .output()
        .expect("scripts/backup runs")
}

fn said(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `himaya audit verify --checkpoints <file>` against the database at `db_url`.
fn audit_verify(db_url: &str, checkpoints: &Path) -> Output {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Command::new(env!("CARGO_BIN_EXE_himaya"))
        .args(["audit", "verify", "--checkpoints"])
        .arg(checkpoints)
        .current_dir(&root)
        .env("HIMAYA_CONFIG_DIR", root.join("config"))
        .env("HIMAYA__DATABASE__URL", db_url)
        .env_remove("HIMAYA_CONFIG")
        .env_remove("HIMAYA_ENV")
        .env_remove("RUST_LOG")
        .output()
        .expect("the himaya binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_backup_brings_back_a_hub_whose_chain_verifies_and_that_goes_on_working() {
    let (agency, addr) = FakeAgency::start(&[]).await;
    let before = TestEnv::new(Some(addr)).await;
    let hub = before.start().await;
    let ch = channel(&hub).await;
    let mut cases = Vec::new();
    for i in 0..3 {
        cases.push(submit_school(&ch, &format!("kept-{i}")).await);
    }
    eventually(30, "three deliveries", || async {
        (agency.count() == 3).then_some(())
    })
    .await;
    let db = before.pool().await;
    wait_count(
        &db,
        "SELECT count(*) FROM audit.log",
        3,
        30,
        "three disclosures",
    )
    .await;
    // A signed checkpoint, exported and kept outside the hub (`himaya audit
    // export-checkpoints`).
    let audit = himaya_audit::connect(&before.settings).await.unwrap();
    let key = himaya_audit::signing_key(&before.settings.audit.signing_key_file).unwrap();
    assert_eq!(
        himaya_audit::checkpoint(&audit, &key).await.unwrap(),
        Some(3)
    );
    let dir = std::env::temp_dir().join(format!("{}-backup", before.db_name));
    std::fs::create_dir_all(&dir).unwrap();
    let exported = dir.join("checkpoints.json");
    std::fs::write(
        &exported,
        serde_json::to_string(&himaya_audit::checkpoints(&audit).await.unwrap()).unwrap(),
    )
    .unwrap();
    audit.close().await;

    // Backed up while the hub runs; the signing key is copied apart, as deploy/README.md
    // says (it is never in the dump).
    let dump = dir.join("himaya.dump");
    let done = script(&[
        "backup",
        "--database-url",
        &before.db_url,
        "--out",
        dump.to_str().unwrap(),
    ]);
    assert!(done.status.success(), "{}", said(&done));
    assert!(dir.join("himaya.dump.sha256").exists());
    let kept_key = dir.join("audit.key");
    std::fs::copy(&before.settings.audit.signing_key_file, &kept_key).unwrap();
    hub.stop().await;
    db.close().await;
    // The old database is gone: dropped with its environment.
    drop(before);

    // A new, empty database (and a new broker vhost): restored, the key put back.
    let after = TestEnv::new(Some(addr)).await;
    let done = script(&[
        "restore",
        "--database-url",
        &after.db_url,
        "--in",
        dump.to_str().unwrap(),
    ]);
    assert!(done.status.success(), "{}", said(&done));
    std::fs::copy(&kept_key, &after.settings.audit.signing_key_file).unwrap();
    // A second restore into it is refused: the database is no longer empty.
    let again = script(&[
        "restore",
        "--database-url",
        &after.db_url,
        "--in",
        dump.to_str().unwrap(),
    ]);
    assert!(!again.status.success());
    assert!(
        said(&again).contains("new, empty database"),
        "{}",
        said(&again)
    );

    // The chain verifies against the checkpoint exported before the backup.
    let verified = audit_verify(&after.db_url, &exported);
    assert!(verified.status.success(), "{}", said(&verified));
    assert!(
        said(&verified)
            .contains("disclosure log intact: 3 entries, 1 exported checkpoints matched"),
        "{}",
        said(&verified)
    );

    // A hub on the restored database: the referrals are there, and a new one flows.
    let hub = after.start().await;
    let ch = channel(&hub).await;
    let db = after.pool().await;
    assert_eq!(count(&db, "SELECT count(*) FROM cases.cases").await, 3);
    for case in &cases {
        CasesClient::new(ch.clone())
            .get_case(as_agency(
                "mosa-cairo",
                pb::GetCaseRequest {
                    case_id: case.clone(),
                    purpose: pb::Purpose::ServiceProvision.into(),
                },
            ))
            .await
            .unwrap();
    }
    submit_school(&ch, "after-restore").await;
    eventually(30, "the new referral delivered", || async {
        (agency.count() == 4).then_some(())
    })
    .await;
    // Three reads and one delivery appended to the restored chain, which still verifies;
    // a checkpoint signed with the restored key, too.
    wait_count(
        &db,
        "SELECT count(*) FROM audit.log",
        7,
        30,
        "seven disclosures",
    )
    .await;
    let audit = himaya_audit::connect(&after.settings).await.unwrap();
    let key = himaya_audit::signing_key(&after.settings.audit.signing_key_file).unwrap();
    assert_eq!(
        himaya_audit::checkpoint(&audit, &key).await.unwrap(),
        Some(7)
    );
    let old_checkpoints: Vec<himaya_audit::chain::Checkpoint> =
        serde_json::from_str(&std::fs::read_to_string(&exported).unwrap()).unwrap();
    assert_eq!(
        himaya_audit::verify(&audit, &old_checkpoints)
            .await
            .unwrap(),
        7
    );
    let all = himaya_audit::checkpoints(&audit).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|c| &c.public_key)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        1,
        "signed with the same key before and after"
    );
    hub.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
