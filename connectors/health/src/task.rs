//! The health agency's answers: a FHIR R4 Task whose `basedOn` names the ServiceRequest
//! we sent (by our `srv_` identifier) and whose `status` is mapped onto the service
//! referral's states. Pure: the webhook calls it, and the result enters the hub through
//! the same `ServiceReferrals.UpdateServiceReferral` as a gRPC caller.

use himaya_connect::inbound::{actor, id, opt_text, text};
use himaya_connect::{msg, InboundError, StatusChange};
use serde_json::Value;

use crate::mapping::Systems;

/// FHIR Task.status → the service referral's state; `None`: a status with no hub meaning.
pub fn state_of(task_status: &str) -> Option<&'static str> {
    Some(match task_status {
        "requested" | "received" => "received",
        "accepted" | "ready" => "accepted",
        "rejected" => "rejected",
        "in-progress" => "in_progress",
        "completed" => "completed",
        "failed" => "failed",
        "cancelled" => "cancelled",
        // draft, on-hold, entered-in-error: nothing the case manager should act on.
        _ => return None,
    })
}

/// Reads a Task whose `basedOn` names the referral with the default system; see
/// [`status_change_with`].
pub fn status_change(task: &Value) -> Result<StatusChange, InboundError> {
    status_change_with(task, &Systems::default())
}

/// The Task's logical id and version, as the hub records it: its `id`, and its
/// `meta.versionId` (`1` when the agency's server keeps no versions). Read after
/// [`status_change_with`] accepted the Task.
pub fn task_version(task: &Value) -> Option<(String, String)> {
    let id = task.get("id")?.as_str()?.to_owned();
    let version = task
        .pointer("/meta/versionId")
        .and_then(Value::as_str)
        .unwrap_or("1")
        .to_owned();
    Some((id, version))
}

/// Reads a Task. The message id is the Task's `id` and `meta.versionId` (a Task's new
/// version is a new message; the same version posted twice is one), or its status when
/// the agency's server keeps no versions. `basedOn` names the referral with the
/// deployment's referral system (`systems`), or with no system.
pub fn status_change_with(task: &Value, systems: &Systems) -> Result<StatusChange, InboundError> {
    match task.get("resourceType").and_then(Value::as_str) {
        Some("Task") => {}
        Some(_) => {
            return Err(InboundError::new(
                "resourceType",
                msg!("inbound-not-a-fhir-task"),
            ))
        }
        None => return Err(InboundError::missing("resourceType")),
    }
    let task_id = id(task, "/id", "id", 64)?;
    let version = match task.pointer("/meta/versionId") {
        None | Some(Value::Null) => None,
        Some(_) => Some(id(task, "/meta/versionId", "meta.versionId", 64)?),
    };
    let status = text(task, "/status", "status", 32)?;
    let state = state_of(status)
        .ok_or_else(|| InboundError::new("status", msg!("inbound-task-status-without-meaning")))?;
    let service_referral_id = based_on(task, &systems.identifier("referral"))?;
    // statusReason is a CodeableConcept: its text, else its first coding's display or code.
    let reason = match opt_text(task, "/statusReason/text", "statusReason.text", 500)? {
        Some(t) => Some(t),
        None => opt_text(
            task,
            "/statusReason/coding/0/display",
            "statusReason.coding[0].display",
            500,
        )?
        .or(opt_text(
            task,
            "/statusReason/coding/0/code",
            "statusReason.coding[0].code",
            100,
        )?),
    }
    .map(str::to_owned);
    if matches!(state, "rejected" | "failed" | "cancelled") && reason.is_none() {
        return Err(InboundError::new(
            "statusReason",
            msg!("inbound-task-status-reason-required"),
        ));
    }
    // The owner's identifier, never its display (usually a practitioner's name).
    let who = opt_text(
        task,
        "/owner/identifier/value",
        "owner.identifier.value",
        128,
    )?
    .unwrap_or("fhir-task");
    Ok(StatusChange {
        // A new version of the Task is a new message; without versions, a new status is.
        message_id: match version {
            Some(v) => format!("task:{task_id}:{v}"),
            None => format!("task:{task_id}:{status}"),
        },
        service_referral_id,
        state,
        reason,
        actor: actor(who),
    })
}

/// The `srv_` id: `basedOn[].identifier` with our system (or no system), the first one.
fn based_on(task: &Value, referral_system: &str) -> Result<String, InboundError> {
    let refs = task
        .get("basedOn")
        .and_then(Value::as_array)
        .ok_or_else(|| InboundError::missing("basedOn"))?;
    refs.iter()
        .filter_map(|r| r.get("identifier"))
        .filter(|i| {
            i.get("system")
                .and_then(Value::as_str)
                .is_none_or(|s| s == referral_system)
        })
        .find_map(|i| i.get("value").and_then(Value::as_str))
        .filter(|v| v.starts_with("srv_") && v.len() <= 64)
        .map(str::to_owned)
        .ok_or_else(|| {
            InboundError::new(
                "basedOn",
                // The system is the deployment's own (`standards.fhir`), not the agency's.
                msg!("inbound-task-based-on", system = referral_system),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fixture(name: &str) -> Value {
        let path = format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_golden_task_maps_onto_a_referral_state() {
        let c = status_change(&fixture("task_accepted.json")).unwrap();
        assert_eq!(
            c,
            StatusChange {
                message_id: "task:task-77:2".into(),
                service_referral_id: "srv_01JD7Q6B2C".into(),
                state: "accepted",
                reason: None,
                actor: "DR-4411".into(),
            }
        );
        let r = status_change(&fixture("task_rejected.json")).unwrap();
        assert_eq!(r.state, "rejected");
        assert_eq!(r.reason.as_deref(), Some("لا توجد سعة في قسم الأطفال"));
    }

    #[test]
    fn the_referral_system_is_the_deployments() {
        let settings = himaya_settings::FhirSettings {
            system_base: "https://hub.mosa.gov.eg/fhir".into(),
            ..Default::default()
        };
        let systems = Systems::new(&settings);
        let mut task = fixture("task_accepted.json");
        // The default system is another deployment's: refused, by field.
        assert_eq!(
            status_change_with(&task, &systems).unwrap_err().field,
            "basedOn"
        );
        task["basedOn"][0]["identifier"]["system"] =
            json!("https://hub.mosa.gov.eg/fhir/sid/referral-id");
        assert_eq!(
            status_change_with(&task, &systems)
                .unwrap()
                .service_referral_id,
            "srv_01JD7Q6B2C"
        );
        assert_eq!(
            task_version(&task),
            Some(("task-77".to_owned(), "2".to_owned()))
        );
        task.as_object_mut().unwrap().remove("meta");
        assert_eq!(task_version(&task).unwrap().1, "1");
    }

    #[test]
    fn every_task_status_is_decided() {
        for s in [
            "draft",
            "requested",
            "received",
            "accepted",
            "rejected",
            "ready",
            "cancelled",
            "in-progress",
            "on-hold",
            "failed",
            "completed",
            "entered-in-error",
        ] {
            let mapped = state_of(s);
            assert_eq!(
                mapped.is_none(),
                matches!(s, "draft" | "on-hold" | "entered-in-error"),
                "{s}"
            );
        }
    }

    #[test]
    fn hostile_payloads_are_refused_by_field_without_echoing_values() {
        let base = fixture("task_accepted.json");
        let with = |f: &dyn Fn(&mut Value)| {
            let mut t = base.clone();
            f(&mut t);
            status_change(&t).unwrap_err()
        };
        assert_eq!(
            with(&|t| t["resourceType"] = json!("Patient")).field,
            "resourceType"
        );
        assert_eq!(with(&|t| t["status"] = json!(7)).field, "status");
        assert_eq!(with(&|t| t["status"] = json!("on-hold")).field, "status");
        assert_eq!(
            with(&|t| {
                t.as_object_mut().unwrap().remove("id");
            })
            .field,
            "id"
        );
        assert_eq!(
            with(&|t| t["basedOn"] = json!([{"identifier": {"value": "مريم"}}])).field,
            "basedOn"
        );
        assert_eq!(
            with(&|t| t["status"] = json!("rejected")).field,
            "statusReason"
        );
        assert_eq!(with(&|t| t["id"] = json!("task 1")).field, "id");
        // A rejection coded, without text, is read from its coding.
        let mut coded = base.clone();
        coded["status"] = json!("rejected");
        coded["statusReason"] = json!({"coding": [{"code": "no-capacity"}]});
        assert_eq!(
            status_change(&coded).unwrap().reason.as_deref(),
            Some("no-capacity")
        );
        // Without versions, a new status is a new message.
        let mut unversioned = base.clone();
        unversioned.as_object_mut().unwrap().remove("meta");
        let first = status_change(&unversioned).unwrap().message_id;
        unversioned["status"] = json!("completed");
        assert_ne!(status_change(&unversioned).unwrap().message_id, first);
        let e = with(&|t| t["resourceType"] = json!("مريم أحمد"));
        assert!(!e.to_string().contains("مريم"), "{e}");
        assert!(status_change(&json!([1, 2])).is_err());
    }

    #[test]
    fn every_refusal_says_what_is_wrong_in_arabic_too() {
        let base = fixture("task_accepted.json");
        let with = |f: &dyn Fn(&mut Value)| {
            let mut t = base.clone();
            f(&mut t);
            status_change(&t).unwrap_err()
        };
        for e in [
            with(&|t| t["resourceType"] = json!("Patient")),
            with(&|t| {
                t.as_object_mut().unwrap().remove("resourceType");
            }),
            with(&|t| {
                t.as_object_mut().unwrap().remove("status");
            }),
            with(&|t| t["status"] = json!(7)),
            with(&|t| t["status"] = json!("on-hold")),
            with(&|t| t["status"] = json!("rejected")),
            with(&|t| t["basedOn"] = json!([{"identifier": {"value": "مريم"}}])),
            with(&|t| {
                t.as_object_mut().unwrap().remove("basedOn");
            }),
            with(&|t| t["id"] = json!("task 1")),
        ] {
            himaya_connect::testing::assert_bilingual(&e);
            let ar = e.problem.render(himaya_connect::Lang::Arabic);
            assert!(!ar.contains("مريم"), "{e:?}: {ar}");
        }
    }
}
