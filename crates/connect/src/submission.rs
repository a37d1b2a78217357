//! Referrals agencies post in the hub's own normalized shape (schools, the emergency line):
//! read with serde, refused with the place of the problem, never its value.

use himaya_record::ReferralDetails;
use serde::de::DeserializeOwned;

use crate::inbound::InboundError;
use himaya_words::msg;

/// Reads a JSON payload into `T`. serde's own message can quote the offending value (a
/// child's name in a field of the wrong type), so only its place and kind are kept.
pub fn parse<T: DeserializeOwned>(v: &serde_json::Value) -> Result<T, InboundError> {
    // Through text, so the error carries a line and column to point at.
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    serde_json::from_str(&text).map_err(|e| {
        let problem = match e.classify() {
            serde_json::error::Category::Data => {
                // serde's English text is only classified here, never passed on.
                if e.to_string().starts_with("missing field") {
                    // "missing field `x`": the name is ours, not the agency's data.
                    return InboundError::missing(
                        e.to_string()
                            .split('`')
                            .nth(1)
                            .unwrap_or("?")
                            .chars()
                            .take(64)
                            .collect::<String>(),
                    );
                }
                msg!("inbound-wrong-type-or-vocabulary")
            }
            _ => msg!("inbound-not-expected-shape"),
        };
        InboundError::new(format!("line {} column {}", e.line(), e.column()), problem)
    })
}

/// The referral inside a payload, in the normalized record's shape (see
/// `examples/*.json` and `himaya_record::ReferralDetails`); the intake validates it.
pub fn referral(v: &serde_json::Value) -> Result<ReferralDetails, InboundError> {
    let r = v
        .get("referral")
        .ok_or_else(|| InboundError::missing("referral"))?;
    parse(r).map_err(|e| InboundError {
        field: format!("referral ({})", e.field),
        ..e
    })
}
