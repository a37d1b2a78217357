//! What the hub's FHIR endpoint for a health agency (`/agencies/<id>/fhir`) does, as an
//! R4 CapabilityStatement: the answer to `GET [base]/metadata` (pure, no I/O).

use serde_json::{json, Value};

use crate::mapping::Systems;

/// When what the statement says last changed (its required `date`).
pub const STATEMENT_DATE: &str = "2026-12-01";

/// The R4 release the endpoint speaks (its technical correction, 4.0.1).
pub const FHIR_VERSION: &str = "4.0.1";

/// The endpoint's CapabilityStatement: an instance (this hub), a server taking Task
/// creates and updates, nothing else.
pub fn capability_statement(systems: &Systems) -> Value {
    let referral = systems.identifier("referral");
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "publisher": "Himaya",
        "kind": "instance",
        "software": {"name": "Himaya", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {
            "description": "Himaya, the interagency child-protection hub: where a health agency reports, as Tasks, what became of the referrals the hub sent it",
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "One base per agency: [hub]/agencies/<agency id>/fhir. Answers are OperationOutcomes; refusals name the element at fault.",
            "security": {
                "description": "Each agency sends its own webhook token (Authorization: Bearer <token>); a token opens only its agency's base. The metadata needs none.",
            },
            "resource": [{
                "type": "Task",
                "documentation": format!(
                    "A Task whose basedOn holds the identifier of the ServiceRequest the hub sent (system {referral}, value srv_…). Its status moves that service referral: requested/received, accepted/ready, rejected, in-progress, completed, failed, cancelled; a rejected, failed or cancelled Task gives its statusReason. Each version (meta.versionId) is taken once."
                ),
                "interaction": [
                    {"code": "create", "documentation": "POST [base]/Task: 201 Created, Location [base]/Task/<id>/_history/<versionId>"},
                    {"code": "update", "documentation": "PUT [base]/Task/<id>: 200 OK for a Task the hub knows, 201 Created (with its Location) for one it has not seen"},
                ],
                "updateCreate": true,
                "conditionalCreate": false,
                "conditionalUpdate": false,
            }],
        }],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_statement_names_the_deployments_referral_system() {
        let s = capability_statement(&Systems::new(&himaya_settings::FhirSettings {
            system_base: "https://hub.mosa.gov.eg/fhir".into(),
            ..Default::default()
        }));
        assert_eq!(s["resourceType"], "CapabilityStatement");
        assert_eq!(s["fhirVersion"], "4.0.1");
        assert_eq!(s["kind"], "instance");
        let task = &s["rest"][0]["resource"][0];
        assert_eq!(task["type"], "Task");
        assert!(task["documentation"]
            .as_str()
            .is_some_and(|d| d.contains("https://hub.mosa.gov.eg/fhir/sid/referral-id")));
        let codes: Vec<&str> = task["interaction"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["code"].as_str())
            .collect();
        assert_eq!(codes, ["create", "update"]);
    }
}
