//! What the agencies send the hub, read by the pure inbound mappings: every refusal names
//! the field and the problem, never the value (an agency's payload may carry a child's
//! name), so it can go back to the agency and into a log line as it is.

/// An agency's payload the hub cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{field}`: {problem}")]
pub struct InboundError {
    /// Where in the payload, as a JSON path (`status`, `basedOn[0].identifier.value`).
    pub field: String,
    pub problem: String,
}

impl InboundError {
    pub fn new(field: impl Into<String>, problem: impl Into<String>) -> InboundError {
        InboundError {
            field: field.into(),
            problem: problem.into(),
        }
    }

    pub fn missing(field: impl Into<String>) -> InboundError {
        InboundError::new(field, "is required")
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
            format!("must be 1 to {max} characters of A-Z, a-z, 0-9, - _ . :"),
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
        .ok_or_else(|| InboundError::new(field, "must be a string"))?;
    let n = s.chars().count();
    if n == 0 || n > max {
        return Err(InboundError::new(
            field,
            format!("must be 1 to {max} characters"),
        ));
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
