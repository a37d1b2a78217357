//! Pulling changed cases from a Primero that cannot push (pure, no I/O): the request for
//! one page, and the reading of its answer. Primero's `GET /api/v2/cases` filters date
//! fields by range (`field=from..to`) and pages with `page` and `per`.

use himaya_connect::{msg, InboundError};
use serde_json::Value;

/// Cases per page.
pub const PER: u64 = 100;

/// The path and query of page `page` of the cases changed from `from` to `to` (RFC 3339).
pub fn page_path(from: &str, to: &str, page: u64) -> String {
    format!(
        "/api/v2/cases?last_updated_at={}..{}&page={page}&per={PER}",
        encode(from),
        encode(to)
    )
}

/// One page: its cases (each to be read with `inbound::case_referral` once wrapped as
/// `{"data": …}`) and whether more pages follow.
pub fn read_page(v: &Value) -> Result<(Vec<Value>, bool), InboundError> {
    let data = v
        .get("data")
        .and_then(Value::as_array)
        .ok_or_else(|| InboundError::new("data", msg!("inbound-primero-page-without-data")))?;
    let meta = |k: &str| v.pointer(&format!("/metadata/{k}")).and_then(Value::as_u64);
    let more = match (meta("total"), meta("per"), meta("page")) {
        (Some(total), Some(per), Some(page)) => page.saturating_mul(per) < total,
        // Without metadata, a full page may have a next one.
        _ => data.len() as u64 >= PER,
    };
    Ok((data.clone(), more))
}

/// When a case last changed, for the pull's cursor.
pub fn last_updated(case: &Value) -> Option<&str> {
    case.get("last_updated_at").and_then(Value::as_str)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters pass).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_page_request_is_primero_shaped() {
        assert_eq!(
            page_path("2026-11-22T10:15:00+00:00", "2026-11-24T00:00:00Z", 2),
            "/api/v2/cases?last_updated_at=2026-11-22T10:15:00%2B00:00..2026-11-24T00:00:00Z&page=2&per=100"
        );
    }

    #[test]
    fn pages_are_read_with_their_metadata() {
        let (cases, more) = read_page(
            &json!({"data": [{"id": "a"}], "metadata": {"total": 101, "per": 100, "page": 1}}),
        )
        .unwrap();
        assert_eq!((cases.len(), more), (1, true));
        let (_, more) =
            read_page(&json!({"data": [], "metadata": {"total": 101, "per": 100, "page": 2}}))
                .unwrap();
        assert!(!more);
        assert_eq!(
            read_page(&json!({"data": {"id": "a"}})).unwrap_err().field,
            "data"
        );
    }
}
