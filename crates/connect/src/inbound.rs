//! What the agencies send the hub, read by the pure inbound mappings: every refusal names
//! the field and the problem, never the value (an agency's payload may carry a child's
//! name), so it can go back to the agency and into a log line as it is.

use himaya_words::{msg, Msg};

/// An agency's payload the hub cannot take: the field, and what is wrong with it, a
/// message of the catalogue (`himaya_words`, `inbound-*`) that the webhook renders in
/// the caller's language. Its arguments are field names, codes and limits: never a value
/// from the payload. Shown (`Display`, logs, the poller) in English.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {problem}")]
pub struct InboundError {
    /// Where in the payload, as a JSON path (`status`, `basedOn[0].identifier.value`).
    pub field: String,
    /// What is wrong.
    pub problem: Msg,
}

impl InboundError {
    /// A refusal of `field`, with its problem: an `inbound-*` message of the catalogue.
    pub fn new(field: impl Into<String>, problem: Msg) -> InboundError {
        InboundError {
            field: field.into(),
            problem,
        }
    }

    /// The field is absent.
    pub fn missing(field: impl Into<String>) -> InboundError {
        InboundError::new(field, msg!("inbound-required"))
    }

    /// The field is there but not a string.
    pub fn not_string(field: impl Into<String>) -> InboundError {
        InboundError::new(field, msg!("inbound-not-string"))
    }

    /// The payload (or the field) is not a JSON object.
    pub fn not_object(field: impl Into<String>) -> InboundError {
        InboundError::new(field, msg!("inbound-not-object"))
    }

    /// The field is not a calendar date.
    pub fn not_date(field: impl Into<String>) -> InboundError {
        InboundError::new(field, msg!("inbound-not-date"))
    }

    /// The field's value is not one of the codes the standard defines, `choices` (the
    /// standard's own codes, never the agency's value).
    pub fn not_one_of(field: impl Into<String>, choices: &[&str]) -> InboundError {
        InboundError::new(
            field,
            msg!("inbound-not-one-of", choices = choices.join(", ")),
        )
    }
}

/// A change of a service referral's state reported by the agency handling it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    /// The agency's own id for this message: retries carry the same one.
    pub message_id: String,
    /// The hub's `srv_` id the agency received in the delivery.
    pub service_referral_id: String,
    /// received | accepted | rejected | in_progress | completed | failed | cancelled
    pub state: &'static str,
    /// Required by the hub to reject, fail or cancel.
    pub reason: Option<String>,
    /// Who at the agency (a staff reference, never a name).
    pub actor: String,
}

/// An agency's coded value kept as it is (a reason code): ASCII letters, digits, `-`,
/// `_` and `.` only, at most 64 of them; anything else is dropped.
pub fn token(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect()
}

/// An agency's id for a message or a resource: 1 to `max` characters of A-Z, a-z, 0-9,
/// `-`, `_`, `.` and `:` (what the intake takes as a submission id), else refused whole
/// (never cut or cleaned, which could make two ids one).
pub fn id<'a>(
    v: &'a serde_json::Value,
    pointer: &str,
    field: &str,
    max: usize,
) -> Result<&'a str, InboundError> {
    let s = text(v, pointer, field, max)?;
    if s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        Ok(s)
    } else {
        Err(InboundError::new(
            field,
            msg!("inbound-id-characters", max = max),
        ))
    }
}

/// A staff reference for the hub's records: at most 64 characters (the hub's limit).
pub fn actor(s: &str) -> String {
    s.chars().take(64).collect()
}

/// A string field of a JSON object: present, a string, 1..=max characters.
pub fn text<'a>(
    v: &'a serde_json::Value,
    pointer: &str,
    field: &str,
    max: usize,
) -> Result<&'a str, InboundError> {
    let s = v
        .pointer(pointer)
        .ok_or_else(|| InboundError::missing(field))?
        .as_str()
        .ok_or_else(|| InboundError::not_string(field))?;
    let n = s.chars().count();
    if n == 0 || n > max {
        return Err(InboundError::new(field, msg!("inbound-length", max = max)));
    }
    Ok(s)
}

/// An optional string field, with the same limits.
pub fn opt_text<'a>(
    v: &'a serde_json::Value,
    pointer: &str,
    field: &str,
    max: usize,
) -> Result<Option<&'a str>, InboundError> {
    match v.pointer(pointer) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(_) => text(v, pointer, field, max).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::assert_bilingual;
    use himaya_words::Lang;
    use serde_json::json;

    #[test]
    fn every_refusal_speaks_english_and_arabic() {
        let v = json!({"n": 7, "e": "", "bad": "a b", "long": "x".repeat(65)});
        for e in [
            text(&v, "/absent", "absent", 10).unwrap_err(),
            text(&v, "/n", "n", 10).unwrap_err(),
            text(&v, "/e", "e", 10).unwrap_err(),
            id(&v, "/bad", "bad", 64).unwrap_err(),
            id(&v, "/long", "long", 64).unwrap_err(),
            opt_text(&v, "/n", "n", 10).unwrap_err(),
            InboundError::missing("x"),
            InboundError::not_string("x"),
            InboundError::not_object("$"),
            InboundError::not_date("x"),
            InboundError::not_one_of("x", &["a", "b"]),
        ] {
            assert_bilingual(&e);
        }
        let required = text(&v, "/absent", "absent", 10).unwrap_err().problem;
        assert_eq!(required, msg!("inbound-required"));
        assert_eq!(required.render(Lang::English), "is required");
        assert_eq!(required.render(Lang::Arabic), "حقل مطلوب");
        let e = InboundError::not_one_of("status", &["open", "closed"]);
        assert_eq!(
            e.problem.render(Lang::English),
            "is not one of open, closed"
        );
        assert_eq!(
            e.problem.render(Lang::Arabic),
            "ليس من القيم المقبولة: open, closed"
        );
        // Limits read with Arabic's plural forms.
        let long = |max| text(&v, "/long", "long", max).unwrap_err().problem;
        assert_eq!(long(10).render(Lang::English), "must be 1 to 10 characters");
        assert_eq!(
            long(10).render(Lang::Arabic),
            "يجب أن يكون طوله من 1 إلى 10 أحرف"
        );
        assert_eq!(
            long(64).render(Lang::Arabic),
            "يجب أن يكون طوله من 1 إلى 64 حرفًا"
        );
        assert_eq!(
            id(&v, "/bad", "bad", 64)
                .unwrap_err()
                .problem
                .render(Lang::English),
            "must be 1 to 64 characters of A-Z, a-z, 0-9, - _ . :"
        );
        // The English text is what the error shows (logs, the poller).
        assert_eq!(e.to_string(), "`status`: is not one of open, closed");
    }

    #[test]
    fn serde_refusals_keep_their_kind_in_both_languages_without_serde_text() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct S {
            sex: himaya_record::Sex,
            age: u8,
        }
        let missing = crate::submission::parse::<S>(&json!({"age": 3})).unwrap_err();
        assert_eq!(missing.field, "sex");
        assert_eq!(
            (
                missing.problem.render(Lang::English).as_str(),
                missing.problem.render(Lang::Arabic).as_str()
            ),
            ("is required", "حقل مطلوب")
        );
        for bad in [
            json!({"sex": "مريم", "age": 3}),
            json!({"sex": "female", "age": "مريم"}),
            json!(["مريم"]),
        ] {
            let e = crate::submission::parse::<S>(&bad).unwrap_err();
            assert_bilingual(&e);
            assert!(e.field.starts_with("line "), "{e:?}");
            let all = format!(
                "{e:?} {} {}",
                e.problem.render(Lang::English),
                e.problem.render(Lang::Arabic)
            );
            assert!(!all.contains("مريم"), "{all}");
            // serde's own words (`unknown variant`, `invalid type`) are not passed on.
            assert!(
                !all.contains("variant") && !all.contains("invalid type"),
                "{all}"
            );
        }
        let e = crate::submission::referral(&json!({"referral": {}})).unwrap_err();
        assert!(e.field.starts_with("referral ("), "{e:?}");
        assert_bilingual(&e);
    }
}
