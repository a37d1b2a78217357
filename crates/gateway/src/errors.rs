//! The last look at every gRPC error before it leaves the hub (called by the gateway on
//! each answer whose status travels in the headers, as every unary error does):
//! - tonic answers a message it cannot decode with INTERNAL and one over the size limit
//!   with OUT_OF_RANGE, in English and naming neither the field nor the limit. gRPC's
//!   conventions are INVALID_ARGUMENT and RESOURCE_EXHAUSTED; the caller gets those, in
//!   their language, saying what to do;
//! - no status message is longer than [`MAX_MESSAGE_BYTES`]: the hub's own messages are
//!   bounded by construction, this is the net under them. A client refuses a response
//!   whose headers pass 16 KiB (hyper's default) as an HTTP/2 protocol error: that is
//!   what a multi-megabyte message did to the webhooks' connection to the hub.

use base64::Engine;
use himaya_proto::status::{localize, msg, status, Lang};
use http::{HeaderMap, HeaderValue};
use tonic::{Code, Status};

/// Longest `grpc-message` the hub sends, in bytes (percent-encoded as on the wire).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;

/// Rewrites, in place, the status carried by `headers` (if any) as described above, and
/// renders a status that names a message of the catalogue (`google.rpc.ErrorInfo` of
/// domain `himaya.v1`, as every status of the hub's services does) in `lang`.
pub fn mend(headers: &mut HeaderMap, lang: Lang, max_message_bytes: usize) {
    let Some(code) = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(Code::from_i32)
    else {
        return;
    };
    let message = headers
        .get("grpc-message")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    let replaced = match code {
        Code::Internal
            if message.starts_with(b"failed%20to%20decode%20Protobuf")
                || message.starts_with(b"failed to decode Protobuf") =>
        {
            Some((Code::InvalidArgument, msg!("gateway-undecodable")))
        }
        Code::OutOfRange
            if message.starts_with(b"Error,%20decoded%20message%20length%20too%20large")
                || message.starts_with(b"Error, decoded message length too large") =>
        {
            Some((
                Code::ResourceExhausted,
                msg!("gateway-too-large", max = max_message_bytes),
            ))
        }
        _ => None,
    };
    if let Some((code, text)) = replaced {
        // Details were about the old status.
        headers.remove("grpc-status-details-bin");
        write(headers, &in_language(status(code, &text), lang));
        return;
    }
    // Every service renders its statuses in English; another language is rendered here,
    // where the caller's is known. Only statuses with details can name a message.
    if lang != Lang::English {
        if let Some(localized) = details(headers)
            .map(|d| Status::with_details(code, "", d.into()))
            .and_then(|s| localize(&s, lang))
        {
            write(headers, &localized);
            return;
        }
    }
    if message.len() > MAX_MESSAGE_BYTES {
        let cut = cut_at(message, MAX_MESSAGE_BYTES);
        if let Ok(v) = HeaderValue::from_bytes(cut) {
            headers.insert("grpc-message", v);
        }
    }
}

fn in_language(s: Status, lang: Lang) -> Status {
    localize(&s, lang).unwrap_or(s)
}

/// The status details the headers carry (`grpc-status-details-bin`, base64 with or
/// without padding); `None` when there are none or they do not decode.
fn details(headers: &HeaderMap) -> Option<Vec<u8>> {
    let raw = headers.get("grpc-status-details-bin")?.as_bytes();
    let raw = raw
        .strip_suffix(b"==")
        .or_else(|| raw.strip_suffix(b"="))
        .unwrap_or(raw);
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(raw)
        .ok()
}

/// Puts `s` in the headers in place of the status they carried.
fn write(headers: &mut HeaderMap, s: &Status) {
    let mut fresh = HeaderMap::new();
    if s.add_header(&mut fresh).is_err() {
        return;
    }
    headers.remove("grpc-message");
    headers.remove("grpc-status-details-bin");
    for name in ["grpc-status", "grpc-message", "grpc-status-details-bin"] {
        if let Some(v) = fresh.remove(name) {
            headers.insert(name, v);
        }
    }
}

#[cfg(test)]
/// gRPC's percent-encoding of a status message: printable ASCII but `%` as is, the rest
/// as `%XX` of its UTF-8 bytes.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// At most `max` bytes of an encoded message, never splitting a `%XX` escape.
fn cut_at(message: &[u8], max: usize) -> &[u8] {
    let mut end = max.min(message.len());
    // An escape is 3 bytes: step back if one of the last two bytes starts one.
    for back in 1..=2 {
        if end >= back && message[end - back] == b'%' {
            end -= back;
            break;
        }
    }
    &message[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    fn carrying(code: Code, message: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from(code as i32));
        h.insert(
            "grpc-message",
            HeaderValue::from_str(&percent_encode(message)).unwrap(),
        );
        h
    }

    #[test]
    fn a_refusal_of_the_catalogue_reaches_the_caller_in_their_language() {
        let refusal = himaya_proto::status::status(
            Code::PermissionDenied,
            &msg!("case-not-found", case_id = "cas_1"),
        );
        let mut h = HeaderMap::new();
        refusal.add_header(&mut h).unwrap();
        mend(&mut h, Lang::Arabic, 1024);
        let back = Status::from_header_map(&h).unwrap();
        assert_eq!(back.code(), Code::PermissionDenied);
        assert!(back.message().contains("cas_1"), "{}", back.message());
        assert!(back
            .message()
            .chars()
            .any(|c| ('\u{0600}'..='\u{06FF}').contains(&c)));
        // The reason and its arguments stay for the client.
        let info = back.get_error_details().error_info().cloned().unwrap();
        assert_eq!(info.reason, "CASE_NOT_FOUND");
        assert_eq!(info.metadata["case_id"], "cas_1");
        // English is what the service wrote: left as it is.
        let mut h = HeaderMap::new();
        refusal.add_header(&mut h).unwrap();
        mend(&mut h, Lang::English, 1024);
        assert_eq!(
            Status::from_header_map(&h).unwrap().message(),
            "no case cas_1"
        );
        // A status naming no message: left alone.
        let mut h = carrying(Code::FailedPrecondition, "a — b");
        mend(&mut h, Lang::Arabic, 1024);
        assert_eq!(h["grpc-message"], "a — b".replace('—', "%E2%80%94"));
    }

    #[test]
    fn undecodable_messages_are_invalid_arguments_in_the_callers_language() {
        let mut h = carrying(
            Code::Internal,
            "failed to decode Protobuf message: invalid varint",
        );
        mend(&mut h, Lang::Arabic, 1024);
        assert_eq!(h["grpc-status"], "3");
        let text = h["grpc-message"].to_str().unwrap();
        assert!(
            text.starts_with("%D8"),
            "Arabic text, percent-encoded: {text}"
        );
    }

    #[test]
    fn oversized_messages_are_resource_exhausted_naming_the_limit() {
        let mut h = carrying(
            Code::OutOfRange,
            "Error, decoded message length too large: found 10485760 bytes, the limit is: 262144 bytes",
        );
        mend(&mut h, Lang::English, 262_144);
        assert_eq!(h["grpc-status"], "8");
        let said = Status::from_header_map(&h).unwrap();
        assert!(
            said.message().contains("262144 bytes"),
            "{}",
            said.message()
        );
    }

    #[test]
    fn long_messages_are_cut_without_splitting_an_escape() {
        let mut h = carrying(Code::InvalidArgument, &"ب".repeat(10_000));
        mend(&mut h, Lang::English, 1024);
        let m = h["grpc-message"].as_bytes();
        assert!(m.len() <= MAX_MESSAGE_BYTES);
        assert_eq!(m.len() % 3, 0, "whole %XX escapes only");
        // Other statuses pass untouched.
        let mut h = carrying(Code::NotFound, "no such case");
        mend(&mut h, Lang::Arabic, 1024);
        assert_eq!(h["grpc-status"], "5");
    }
}
