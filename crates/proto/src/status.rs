//! Validation failures as gRPC statuses with `google.rpc.BadRequest` field violations and
//! a localized message, in Arabic when the caller asks for it (`accept-language: ar`).

use himaya_record::Violations;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The language of text meant for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Arabic,
    English,
}

impl Lang {
    /// From the request's `accept-language` metadata; Arabic when it comes first.
    pub fn of(meta: &tonic::metadata::MetadataMap) -> Lang {
        let header = meta
            .get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if header.trim_start().to_ascii_lowercase().starts_with("ar") {
            Lang::Arabic
        } else {
            Lang::English
        }
    }

    pub fn tag(self) -> &'static str {
        match self {
            Lang::Arabic => "ar",
            Lang::English => "en",
        }
    }
}

/// `INVALID_ARGUMENT` listing every field and what to do about it. Carries rule
/// descriptions only, never the values sent.
pub fn invalid_argument(v: &Violations, lang: Lang) -> Status {
    let mut details = ErrorDetails::new();
    let mut lines = Vec::new();
    for fv in v.iter() {
        let text = match lang {
            Lang::Arabic => fv.problem.arabic(),
            Lang::English => fv.problem.english(),
        };
        lines.push(format!("{}: {}", fv.field, text));
        details.add_bad_request_violation(
            fv.field.clone(),
            format!("[{}] {}", fv.problem.code(), text),
        );
    }
    let (summary, joined) = match lang {
        Lang::Arabic => (
            format!("الطلب غير مكتمل أو غير صالح (عدد المشكلات: {})", lines.len()),
            lines.join("؛ "),
        ),
        Lang::English => (
            format!(
                "the request is incomplete or invalid ({} problem(s))",
                lines.len()
            ),
            lines.join("; "),
        ),
    };
    // The status message lists everything for clients that show only the message; the
    // localized message is the short summary shown above the field list.
    let message = format!("{summary}: {joined}");
    details.set_localized_message(lang.tag(), summary);
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// The calling agency as the hub's gateway established it (`src/gateway.rs`): proven by
/// the agency's certificate under mutual TLS, or as sent in development identity mode.
/// The gateway refuses every `himaya.v1` call without one, and replaces whatever the
/// client put in this header, so handlers may trust it.
pub fn caller(meta: &tonic::metadata::MetadataMap) -> Option<String> {
    meta.get("x-himaya-agency")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
