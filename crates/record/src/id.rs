//! Prefixed identifiers (`case_…`, `ref_…`, `msg_…`): a glance at a log line tells what an id
//! names, and an id of one kind can never be passed where another is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a valid id. Never carries the offending text: ids arrive from
/// outside and a malformed one could be anything, personal data included.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid {kind} id: expected `{prefix}` followed by 32 lowercase hex digits")]
pub struct IdError {
    pub kind: &'static str,
    pub prefix: &'static str,
}

impl IdError {
    /// The same as a field's problem, for a field violation.
    pub fn problem(&self) -> crate::Problem {
        crate::Problem::NotAnId {
            prefix: self.prefix,
        }
    }
}

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(uuid::Uuid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new id; UUIDv7, so ids sort by creation time (good for B-tree indexes).
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            /// Wraps a UUID read back from storage.
            pub fn from_uuid(uuid: uuid::Uuid) -> Self {
                Self(uuid)
            }

            pub fn uuid(&self) -> uuid::Uuid {
                self.0
            }

            pub fn parse(s: &str) -> Result<Self, IdError> {
                let err = IdError { kind: $kind, prefix: $prefix };
                let hex = s.strip_prefix($prefix).ok_or(err.clone())?;
                if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(err);
                }
                uuid::Uuid::try_parse(hex).map(Self).map_err(|_| err)
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}{}", $prefix, self.0.simple())
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

prefixed_id!(
    /// A child's case in the hub.
    CaseId, "case_", "case"
);
prefixed_id!(
    /// One referral of a child into the hub (a case can receive several).
    ReferralId, "ref_", "referral"
);
prefixed_id!(
    /// A service referral from one agency to another, for one plan action.
    ServiceReferralId, "srv_", "service referral"
);
prefixed_id!(
    /// A service on the service map.
    ServiceId, "svc_", "service"
);
prefixed_id!(
    /// One message on the bus; consumers deduplicate on it.
    MessageId, "msg_", "message"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_display_and_parse() {
        let id = CaseId::new();
        assert_eq!(CaseId::parse(&id.to_string()), Ok(id));
        assert!(id.to_string().starts_with("case_"));
    }

    #[test]
    fn refuses_wrong_prefix_and_garbage() {
        let r = ReferralId::new().to_string();
        assert!(CaseId::parse(&r).is_err());
        assert!(CaseId::parse("case_").is_err());
        assert!(CaseId::parse("case_ZZZZ").is_err());
        assert!(CaseId::parse("case_0123456789ABCDEF0123456789ABCDEF").is_err());
    }

    #[test]
    fn serde_uses_the_prefixed_form() {
        let id = MessageId::new();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<MessageId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<MessageId>("\"case_x\"").is_err());
    }
}
