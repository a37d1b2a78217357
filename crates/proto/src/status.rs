//! Validation failures as gRPC statuses with `google.rpc.BadRequest` field violations and
//! a localized message, in Arabic when the caller asks for it (`accept-language: ar`).

use himaya_record::Violations;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use himaya_words::{msg, words, Lang, Msg};

/// The caller's language, from the request's `accept-language` metadata: Arabic when it
/// comes first, English otherwise.
pub fn lang(meta: &tonic::metadata::MetadataMap) -> Lang {
    Lang::from_header(
        meta.get("accept-language")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(""),
    )
}

/// `google.rpc.ErrorInfo.domain` of the hub's statuses.
pub const DOMAIN: &str = "himaya.v1";

/// A status whose text is a message of the catalogue (`himaya_words`): the message in
/// English, and its id and arguments in `google.rpc.ErrorInfo` (reason `CASE_NOT_FOUND`
/// for `case-not-found`, the arguments as metadata) so that a client can act on the
/// reason without reading text. The gateway renders it again in the caller's language.
pub fn status(code: Code, msg: &Msg) -> Status {
    status_with(code, msg, ErrorDetails::new())
}

/// [`status`] with more details beside the message's (a retry hint, say).
pub fn status_with(code: Code, msg: &Msg, mut details: ErrorDetails) -> Status {
    details.set_error_info(
        reason(msg.id()),
        DOMAIN,
        msg.args()
            .map(|(k, v)| (k.to_owned(), v.wire()))
            .collect::<std::collections::HashMap<_, _>>(),
    );
    Status::with_error_details(code, msg.render(Lang::English), details)
}

/// RESOURCE_EXHAUSTED: the hub is at its bound for this kind of call; saying when to
/// send it again (`google.rpc.RetryInfo`). Nothing of the call was stored.
pub fn busy(retry_after: std::time::Duration) -> Status {
    let mut details = ErrorDetails::new();
    details.set_retry_info(Some(retry_after));
    status_with(
        Code::ResourceExhausted,
        &msg!(
            "gateway-busy",
            retry_after_ms = retry_after.as_millis() as u64
        ),
        details,
    )
}

/// `case-not-found` as an `ErrorInfo` reason: `CASE_NOT_FOUND`.
fn reason(id: &str) -> String {
    id.replace('-', "_").to_ascii_uppercase()
}

/// The same status in `lang`, when it carries a message of the catalogue ([`status`]):
/// its text rendered again, with a `google.rpc.LocalizedMessage` beside the other
/// details. `None` for any other status, left as it is.
pub fn localize(status: &Status, lang: Lang) -> Option<Status> {
    let details = status.get_error_details();
    let info = details.error_info().filter(|i| i.domain == DOMAIN)?;
    let id = info.reason.replace('_', "-").to_ascii_lowercase();
    let text = himaya_words::render(
        lang,
        &id,
        info.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    )?;
    let mut details = details;
    details.set_localized_message(lang.tag(), text.clone());
    Some(Status::with_error_details(status.code(), text, details))
}

/// How much of the status message lists problems, in bytes before encoding.
const MESSAGE_LIST_BYTES: usize = 1000;

/// `INVALID_ARGUMENT` listing every field and what to do about it. Carries rule
/// descriptions only, never the values sent.
pub fn invalid_argument(v: &Violations, lang: Lang) -> Status {
    let mut details = ErrorDetails::new();
    let mut lines = Vec::new();
    for fv in v.iter() {
        let text = fv.problem.text(lang);
        lines.push(format!("{}: {}", fv.field, text));
        details.add_bad_request_violation(
            fv.field.clone(),
            format!("[{}] {}", fv.problem.code(), text),
        );
    }
    let total = lines.len() + v.more();
    // The message repeats the first problems for clients that show only it; the field
    // violations carry them all. Percent-encoded Arabic triples in size on the wire.
    // The first problem is always named (cut short if it is long, as a list of choices
    // can be); the others as long as they fit.
    if let Some(first) = lines.first_mut() {
        if first.len() > MESSAGE_LIST_BYTES {
            let mut end = MESSAGE_LIST_BYTES;
            while !first.is_char_boundary(end) {
                end -= 1;
            }
            first.truncate(end);
            first.push('…');
        }
    }
    let mut shown = 0;
    let mut bytes = 0;
    for l in &lines {
        if shown > 0 && bytes + l.len() > MESSAGE_LIST_BYTES {
            break;
        }
        bytes += l.len();
        shown += 1;
    }
    let hidden = total - shown;
    lines.truncate(shown);
    if hidden > 0 {
        lines.push(msg!("violations-more", count = hidden).render(lang));
    }
    let summary = msg!("violations-summary", count = total).render(lang);
    let joined = lines.join(match lang {
        Lang::Arabic => "؛ ",
        Lang::English => "; ",
    });
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

/// The person acting, when the web front proved them: the gateway keeps this header only
/// on calls from the web component (or in development identity mode) and removes it from
/// every other caller, so a handler may record it as who did what.
pub fn person(meta: &tonic::metadata::MetadataMap) -> Option<String> {
    meta.get(PERSON_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|p| p.starts_with("psn_"))
        .map(str::to_owned)
}

/// The metadata naming the person acting (kept by the gateway only from the web front).
pub const PERSON_HEADER: &str = "x-himaya-person";
/// The roles of that person, comma-separated (kept and dropped with [`PERSON_HEADER`]).
pub const ROLES_HEADER: &str = "x-himaya-roles";

/// A person the web front proved, with the roles their account holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acting {
    /// `psn_…`: the person's id, which the hub records as who did what.
    pub person: String,
    pub roles: Vec<String>,
}

impl Acting {
    pub fn has(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// The person acting and their roles, when the web front proved them (see [`person`]).
/// A person without roles is no person: the gateway refuses such a call before this.
pub fn acting(meta: &tonic::metadata::MetadataMap) -> Option<Acting> {
    let person = person(meta)?;
    let roles: Vec<String> = meta
        .get(ROLES_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned)
        .collect();
    Some(Acting { person, roles })
}

/// Why a call names no agency the hub knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerError {
    /// No `x-himaya-agency` at all.
    Unidentified,
    /// An agency the directory does not have (the claim is never repeated back).
    Unknown,
}

impl CallerError {
    /// What the caller should do, as a message of the catalogue.
    pub fn msg(self) -> Msg {
        match self {
            CallerError::Unidentified => msg!("caller-unidentified"),
            CallerError::Unknown => msg!("caller-unknown"),
        }
    }

    /// UNAUTHENTICATED for no agency, PERMISSION_DENIED for one the hub does not know.
    pub fn status(self) -> tonic::Status {
        let code = match self {
            CallerError::Unidentified => Code::Unauthenticated,
            CallerError::Unknown => Code::PermissionDenied,
        };
        status(code, &self.msg())
    }
}
