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

use himaya_proto::status::Lang;
use http::{HeaderMap, HeaderValue};
use tonic::Code;

/// Longest `grpc-message` the hub sends, in bytes (percent-encoded as on the wire).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;

/// Rewrites, in place, the status carried by `headers` (if any) as described above.
/// `said_lang`: the caller sent `accept-language`, so a bilingual message is cut to its
/// language.
pub fn mend(headers: &mut HeaderMap, lang: Lang, said_lang: bool, max_message_bytes: usize) {
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
            Some((Code::InvalidArgument, undecodable(lang)))
        }
        Code::OutOfRange
            if message.starts_with(b"Error,%20decoded%20message%20length%20too%20large")
                || message.starts_with(b"Error, decoded message length too large") =>
        {
            Some((Code::ResourceExhausted, too_large(lang, max_message_bytes)))
        }
        _ => None,
    };
    if let Some((code, text)) = replaced {
        headers.insert("grpc-status", HeaderValue::from(code as i32));
        if let Ok(v) = HeaderValue::from_str(&percent_encode(&text)) {
            headers.insert("grpc-message", v);
        }
        // Details were about the old status.
        headers.remove("grpc-status-details-bin");
        return;
    }
    if let Some(one) = in_one_language(message, lang).filter(|_| said_lang) {
        if let Ok(v) = HeaderValue::from_str(&percent_encode(&one)) {
            headers.insert("grpc-message", v);
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

/// The caller's half of a bilingual message ("English — العربية", as the services write
/// refusals that no field carries); `None` when the message is not of that form. Only
/// called for a caller that said its language (`accept-language`): one that did not
/// keeps both halves.
fn in_one_language(encoded: &[u8], lang: Lang) -> Option<String> {
    let text = percent_decode(encoded)?;
    let arabic = |s: &str| s.chars().any(|c| ('\u{0600}'..='\u{06FF}').contains(&c));
    let (en, ar) = text.split_once(" — ")?;
    if arabic(en) || !arabic(ar) {
        return None;
    }
    Some(match lang {
        Lang::English => en.to_owned(),
        Lang::Arabic => ar.to_owned(),
    })
}

/// A `grpc-message` back to its text; `None` if it is not valid percent-encoded UTF-8.
fn percent_decode(encoded: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut i = 0;
    while i < encoded.len() {
        if encoded[i] == b'%' {
            let hex = std::str::from_utf8(encoded.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(encoded[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn undecodable(lang: Lang) -> String {
    match lang {
        Lang::English => "the request is not a valid message of this call's type (protocol buffers): check that the client uses the hub's current .proto files".into(),
        Lang::Arabic => "الطلب ليس رسالة صالحة من نوع هذه العملية (protocol buffers): تأكد من أن العميل يستخدم ملفات .proto الحالية للمنصة".into(),
    }
}

fn too_large(lang: Lang, max: usize) -> String {
    match lang {
        Lang::English => format!(
            "the request is larger than the {max} bytes one call may carry (grpc.max_message_bytes): shorten the long text fields or the lists"
        ),
        Lang::Arabic => format!(
            "الطلب أكبر من الحد المسموح لعملية واحدة ({max} بايت، grpc.max_message_bytes): اختصر الحقول النصية الطويلة أو القوائم"
        ),
    }
}

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

    fn status(code: Code, message: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from(code as i32));
        h.insert(
            "grpc-message",
            HeaderValue::from_str(&percent_encode(message)).unwrap(),
        );
        h
    }

    #[test]
    fn a_bilingual_refusal_reaches_the_caller_in_their_language() {
        let said = "case case_1 is not yours — الحالة ليست من حالاتك";
        let mut h = status(Code::PermissionDenied, said);
        mend(&mut h, Lang::Arabic, true, 1024);
        assert_eq!(
            percent_decode(h["grpc-message"].as_bytes()).unwrap(),
            "الحالة ليست من حالاتك"
        );
        let mut h = status(Code::PermissionDenied, said);
        mend(&mut h, Lang::English, true, 1024);
        assert_eq!(h["grpc-message"], "case case_1 is not yours");
        // Not of that form: left alone.
        let mut h = status(Code::FailedPrecondition, "a — b");
        mend(&mut h, Lang::Arabic, true, 1024);
        assert_eq!(h["grpc-message"], "a — b".replace('—', "%E2%80%94"));
    }

    #[test]
    fn undecodable_messages_are_invalid_arguments_in_the_callers_language() {
        let mut h = status(
            Code::Internal,
            "failed to decode Protobuf message: invalid varint",
        );
        mend(&mut h, Lang::Arabic, true, 1024);
        assert_eq!(h["grpc-status"], "3");
        let text = h["grpc-message"].to_str().unwrap();
        assert!(
            text.starts_with("%D8"),
            "Arabic text, percent-encoded: {text}"
        );
    }

    #[test]
    fn oversized_messages_are_resource_exhausted_naming_the_limit() {
        let mut h = status(
            Code::OutOfRange,
            "Error, decoded message length too large: found 10485760 bytes, the limit is: 262144 bytes",
        );
        mend(&mut h, Lang::English, true, 262_144);
        assert_eq!(h["grpc-status"], "8");
        assert!(h["grpc-message"].to_str().unwrap().contains("262144 bytes"));
    }

    #[test]
    fn long_messages_are_cut_without_splitting_an_escape() {
        let mut h = status(Code::InvalidArgument, &"ب".repeat(10_000));
        mend(&mut h, Lang::English, true, 1024);
        let m = h["grpc-message"].as_bytes();
        assert!(m.len() <= MAX_MESSAGE_BYTES);
        assert_eq!(m.len() % 3, 0, "whole %XX escapes only");
        // Other statuses pass untouched.
        let mut h = status(Code::NotFound, "no such case");
        mend(&mut h, Lang::Arabic, true, 1024);
        assert_eq!(h["grpc-status"], "5");
    }
}
