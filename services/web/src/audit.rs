//! The auditor's view of the disclosure log (`himaya.v1.Audit`): the decisions in their
//! agency's scope (the whole log for the national ministry, else what was disclosed or
//! refused to their own agency), filtered by case, agency, person, kind and decision, a
//! page at a time, and the state of the hash chain. The log holds ids and codes only.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use maud::{html, Markup};
use tonic_types::StatusExt;

use crate::people::Role;
use crate::referral::Form;
use crate::text::{label, lang_of, pick, Local};
use crate::{failed, html_page, hub, pages, signed_in, App};

/// Entries a page shows.
const PAGE: i32 = 50;
/// The kinds of entry (the path that asked), as the log names them.
const KINDS: &[&str] = &[
    "bus_delivery",
    "grpc_read",
    "grpc_call",
    "break_glass",
    "export",
    "feedback",
];
const DECISIONS: &[&str] = &["permit", "deny", "break_glass"];

/// The filters as asked (each bounded), and the page.
struct Asked {
    case_id: String,
    agency: String,
    person: String,
    kind: String,
    decision: String,
    before: i64,
}

impl Asked {
    fn parse(query: Option<String>) -> Asked {
        let q = Form::parse(query.unwrap_or_default().as_bytes());
        let take = |n: &str| q.get(n).chars().take(64).collect::<String>();
        Asked {
            case_id: take("case_id"),
            agency: take("agency"),
            person: take("person"),
            kind: take("kind"),
            decision: take("decision"),
            before: q.get("before").parse::<i64>().unwrap_or(0).max(0),
        }
    }

    /// The query string of these filters, from `before` (0: the newest).
    fn link(&self, before: i64) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("case_id", &self.case_id),
            ("agency", &self.agency),
            ("person", &self.person),
            ("kind", &self.kind),
            ("decision", &self.decision),
        ] {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
        if before > 0 {
            q.append_pair("before", &before.to_string());
        }
        format!("/audit?{}", q.finish())
    }
}

/// `GET /audit`.
pub(crate) async fn disclosure_log(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, &[Role::Auditor]).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let asked = Asked::parse(query);
    let mut audit = pb::audit_client::AuditClient::new(app.hub.channel());
    let list = pb::ListDisclosuresRequest {
        filter: Some(pb::DisclosureFilter {
            case_id: asked.case_id.clone(),
            recipient: asked.agency.clone(),
            person: asked.person.clone(),
            decision: asked.decision.clone(),
            channel: asked.kind.clone(),
            ..Default::default()
        }),
        page_size: PAGE,
        before_seq: asked.before,
    };
    let list = match hub::request(&s.person, lang, list) {
        Ok(r) => audit.list_disclosures(r).await,
        Err(e) => return failed(lang, Some(&s), e),
    };
    let status = match hub::request(&s.person, lang, pb::GetChainStatusRequest {}) {
        Ok(r) => audit.get_chain_status(r).await.map(|r| r.into_inner()),
        Err(e) => return failed(lang, Some(&s), e),
    };
    let (page, errors, code) = match list {
        Ok(r) => (Some(r.into_inner()), Vec::new(), StatusCode::OK),
        Err(st) if st.code() == tonic::Code::InvalidArgument => {
            (None, field_errors(&st), StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(st) if st.code() == tonic::Code::PermissionDenied && !asked.agency.is_empty() => (
            None,
            vec![("agency", st.message().to_owned())],
            StatusCode::FORBIDDEN,
        ),
        Err(st) => return crate::hub_unavailable(lang, &s, &st),
    };
    if let Err(st) = &status {
        tracing::warn!(code = ?st.code(), "the chain status could not be read");
    }
    let ids: Vec<String> = page
        .iter()
        .flat_map(|p| p.entries.iter().filter_map(|e| e.person.clone()))
        .collect();
    let names = names(&app, &ids).await;
    let whole = page.as_ref().map(|p| p.whole_log).unwrap_or(true);
    let l = Local::new(lang, &app.settings.web);
    let t = |ar, en| pick(lang, ar, en);
    let body = html! {
        h1 { (t("سجل الإفصاح", "Disclosure log")) }
        p.hint {
            @if whole {
                (t("ترى السجل كاملًا: كل قرار إفصاح أو رفض في المنصة.", "You see the whole log: every decision to disclose or refuse in the hub."))
            } @else {
                (t("ترى ما أُفصح لجهتك أو رُفض لها فقط.", "You see only what was disclosed or refused to your agency."))
            }
            " " (t("لا يحوي السجل بيانات أي طفل: أرقام ورموز فقط.", "The log holds no child's data: ids and codes only."))
        }
        (chain_box(&l, status.as_ref().ok()))
        (filters(lang, &app, &asked, (whole, &s.person.agency_id), &errors))
        @if let Some(p) = &page {
            (entries(&l, &app, &asked, p, &names))
        }
    };
    html_page(
        code,
        pages::page(lang, t("سجل الإفصاح", "Disclosure log"), Some(&s), body),
    )
}

/// The hub's field violations, by the filter input each belongs next to.
fn field_errors(status: &tonic::Status) -> Vec<(&'static str, String)> {
    let Some(bad) = status.get_details_bad_request() else {
        return vec![("form", status.message().to_owned())];
    };
    bad.field_violations
        .into_iter()
        .map(|v| {
            let text = v
                .description
                .split_once("] ")
                .map(|(_, t)| t.to_owned())
                .unwrap_or(v.description);
            let input = match v.field.as_str() {
                "filter.case_id" => "case_id",
                "filter.recipient" => "agency",
                "filter.person" => "person",
                "filter.decision" => "decision",
                "filter.channel" => "kind",
                _ => "form",
            };
            (input, text)
        })
        .collect()
}

/// The names of the persons the web front knows among `ids` (psn_…).
async fn names(app: &App, ids: &[String]) -> Vec<(String, String)> {
    if ids.is_empty() {
        return Vec::new();
    }
    let found: Result<Vec<(String, String)>, sqlx::Error> =
        sqlx::query_as("SELECT person_id, name_ar FROM persons WHERE person_id = ANY($1)")
            .bind(ids)
            .fetch_all(&app.pool)
            .await;
    found.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the names of the log's persons could not be read");
        Vec::new()
    })
}

/// The state of the hash chain and its last signed checkpoint.
fn chain_box(l: &Local, status: Option<&pb::ChainStatus>) -> Markup {
    let lang = l.lang;
    let t = |ar, en| pick(lang, ar, en);
    html! {
        section.status-box aria-labelledby="chain-heading" {
            h2 #chain-heading { (t("سلامة السجل", "Integrity of the log")) }
            @match status {
                None => p.error role="alert" { (t("تعذرت قراءة حالة السلسلة الآن؛ أعد تحميل الصفحة بعد قليل.", "The chain's state could not be read now; reload the page shortly.")) },
                Some(c) => {
                    @match c.state() {
                        pb::ChainState::Tampered => p.error role="alert" {
                            strong { (t("تم العبث بالسجل", "The log was TAMPERED with")) }
                            ": " (t("القيد ", "entry ")) (l.number(c.problem_seq)) " — " (problem(lang, &c.problem)) ". "
                            (t("أبلغ مشغلي المنصة فورًا.", "Tell the hub's operators at once."))
                        },
                        pb::ChainState::Intact => p.verified {
                            strong { (t("سليم", "Intact")) } ": "
                            (t("تحققت المنصة من السلسلة كاملة", "the whole chain was verified"))
                            " (" (l.number(c.last_full_pass_length)) (t(" قيدًا", " entries")) ")"
                            @if let Some(at) = &c.last_full_pass_at { " " (t("في ", "at ")) (when(l, at)) }
                            "."
                        },
                        _ => p {
                            strong { (t("قيد التحقق", "Being verified")) } ": "
                            (t("تم التحقق حتى القيد ", "checked up to entry ")) (l.number(c.verified_through))
                            (t(" من ", " of ")) (l.number(c.length)) (t("، دون أي مشكلة حتى الآن. أعد تحميل الصفحة للمتابعة.", ", no problem so far. Reload the page to continue."))
                        },
                    }
                    dl {
                        dt { (t("عدد القيود", "Entries in the log")) } dd { (l.number(c.length)) }
                        dt { (t("قيود فُحصت في هذا العرض", "Entries checked for this view")) }
                        dd { (l.number(c.checked_now)) " " (t("(بحد أقصى ", "(at most ")) (l.number(c.max_entries_per_call)) ")" }
                        dt { (t("آخر نقطة تحقق موقّعة", "Last signed checkpoint")) }
                        dd {
                            @match &c.last_checkpoint {
                                None => (t("لم تُوقّع أي نقطة بعد.", "None signed yet.")),
                                Some(cp) => {
                                    (t("القيد ", "entry ")) (l.number(cp.seq)) " · " (when(l, &cp.signed_at))
                                    " · " (t("المفتاح ", "key ")) code { (cp.key_id) }
                                    " · "
                                    @if cp.signature_valid {
                                        (t("التوقيع صحيح", "signature valid"))
                                    } @else {
                                        strong.error { (t("التوقيع غير صحيح", "signature NOT valid")) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What a verification problem means, by its code.
fn problem(lang: Lang, code: &str) -> &'static str {
    let t = |ar, en| pick(lang, ar, en);
    match code {
        "modified" => t(
            "عُدّل قيد بعد كتابته",
            "an entry was changed after it was written",
        ),
        "missing" => t("قيد مفقود", "an entry is missing"),
        "broken" => t(
            "أُدرج قيد أو حُذف أو غُيّر ترتيبه",
            "an entry was inserted, removed or reordered",
        ),
        "bad_checkpoint" => t(
            "توقيع نقطة تحقق غير صحيح",
            "a checkpoint's signature does not verify",
        ),
        "checkpoint_mismatch" => t(
            "أُعيدت كتابة القيود حتى نقطة تحقق موقّعة",
            "the entries up to a signed checkpoint were rewritten",
        ),
        "truncated" => t("قُطع آخر السجل", "the end of the log was cut off"),
        _ => t("مشكلة غير معروفة", "an unknown problem"),
    }
}

/// An RFC 3339 instant as a `<time>` to the second, in the page's language, digits and
/// zone, isolated in the page's direction (as given, left to right, if it cannot be read).
fn when(l: &Local, at: &str) -> Markup {
    match DateTime::parse_from_rfc3339(at) {
        Ok(d) => {
            let d = d.with_timezone(&Utc);
            html! { bdi { time datetime=(d.to_rfc3339()) { (l.date_time_seconds(d)) } } }
        }
        Err(_) => html! { bdi dir="ltr" { (at) } },
    }
}

fn decision(lang: Lang, code: &str) -> &str {
    match code {
        "permit" => pick(lang, "أُفصح", "Disclosed"),
        "deny" => pick(lang, "رُفض", "Refused"),
        "break_glass" => pick(lang, "وصول طارئ", "Break-glass"),
        other => other,
    }
}

fn agency_name(app: &App, lang: Lang, id: &str) -> String {
    crate::lifecycle::agency_name(&app.settings, id, lang)
}

/// The filter form (GET): case, receiving agency (any, with the whole log; else only
/// one's own, `own`), person, kind, decision.
fn filters(
    lang: Lang,
    app: &App,
    asked: &Asked,
    (whole, own): (bool, &str),
    errors: &[(&'static str, String)],
) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    let has = |input: &str| errors.iter().any(|(i, _)| *i == input);
    let error = |input: &str| -> Markup {
        html! {
            @for (_, e) in errors.iter().filter(|(i, _)| *i == input) {
                p.field-error id={(input) "-error"} { (e) }
            }
        }
    };
    let described = |input: &str| has(input).then(|| format!("{input}-error"));
    let mut agencies: Vec<(String, String)> = app
        .settings
        .agencies
        .ids()
        .into_iter()
        // Without the whole log, only one's own agency can be asked for.
        .filter(|id| whole || id.as_str() == own)
        .map(|id| {
            let name = agency_name(app, lang, &id);
            (id, name)
        })
        .collect();
    agencies.sort_by(|a, b| a.1.cmp(&b.1));
    html! {
        h2 { (t("تصفية", "Filter")) }
        @if has("form") {
            div.error role="alert" { (error("form")) }
        } @else if !errors.is_empty() {
            p.error role="alert" { (t("راجع الحقول المشار إليها أدناه.", "Check the fields marked below.")) }
        }
        form.filters method="get" action="/audit" {
            label for="case_id" { (t("رقم الحالة", "Case number")) }
            input #case_id name="case_id" value=(asked.case_id) maxlength="64" dir="ltr"
                aria-invalid=[has("case_id").then_some("true")] aria-describedby=[described("case_id")];
            (error("case_id"))
            label for="agency" { (t("الجهة المستلمة", "Receiving agency")) }
            select #agency name="agency" aria-invalid=[has("agency").then_some("true")] aria-describedby=[described("agency")] {
                option value="" { (if whole { t("كل الجهات", "All agencies") } else { t("جهتك", "Your agency") }) }
                @for (id, name) in &agencies {
                    option value=(id) selected[asked.agency == id.as_str()] { (name) }
                }
            }
            (error("agency"))
            label for="person" { (t("الشخص (رقمه psn_…)", "Person (their psn_… id)")) }
            input #person name="person" value=(asked.person) maxlength="64" dir="ltr"
                aria-invalid=[has("person").then_some("true")] aria-describedby=[described("person")];
            (error("person"))
            label for="kind" { (t("النوع", "Kind")) }
            select #kind name="kind" aria-invalid=[has("kind").then_some("true")] aria-describedby=[described("kind")] {
                option value="" { (t("كل الأنواع", "All kinds")) }
                @for k in KINDS {
                    option value=(k) selected[asked.kind == *k] { (label(k, lang)) }
                }
            }
            (error("kind"))
            label for="decision" { (t("القرار", "Decision")) }
            select #decision name="decision" aria-invalid=[has("decision").then_some("true")] aria-describedby=[described("decision")] {
                option value="" { (t("كل القرارات", "All decisions")) }
                @for d in DECISIONS {
                    option value=(d) selected[asked.decision == *d] { (decision(lang, d)) }
                }
            }
            (error("decision"))
            button type="submit" { (t("عرض", "Show")) }
        }
    }
}

/// The page of entries, newest first, and the links to the next and the newest page.
fn entries(
    l: &Local,
    app: &App,
    asked: &Asked,
    page: &pb::DisclosurePage,
    names: &[(String, String)],
) -> Markup {
    let lang = l.lang;
    let t = |ar, en| pick(lang, ar, en);
    let name_of = |id: &str| names.iter().find(|(p, _)| p == id).map(|(_, n)| n.as_str());
    html! {
        h2 #entries-heading { (t("القيود", "Entries")) }
        @if page.entries.is_empty() {
            p { (t("لا توجد قيود تطابق التصفية.", "No entries match the filter.")) }
        } @else {
            div.scroll.wide tabindex="0" role="region" aria-labelledby="entries-heading" {
                table {
                    thead { tr {
                        th scope="col" { (t("الوقت", "Time")) }
                        th scope="col" { (t("القرار", "Decision")) }
                        th scope="col" { (t("الحالة", "Case")) }
                        th scope="col" { (t("الجهة المستلمة", "Recipient")) }
                        th scope="col" { (t("الشخص", "Person")) }
                        th scope="col" { (t("الغرض", "Purpose")) }
                        th scope="col" { (t("فئات البيانات", "Categories")) }
                        th scope="col" { (t("السبب", "Reason")) }
                        th scope="col" { (t("النوع", "Kind")) }
                    } }
                    tbody {
                        @for e in &page.entries {
                            tr {
                                td { (when(l, &e.at)) }
                                td { (decision(lang, &e.decision)) }
                                td { a href=(asked_case(asked, &e.case_id)) { code { (e.case_id) } } }
                                td { bdi { (agency_name(app, lang, &e.recipient)) } }
                                td {
                                    @if let Some(p) = &e.person {
                                        @if let Some(n) = name_of(p) { bdi { (n) } " " }
                                        code { (p) }
                                    } @else { "—" }
                                }
                                td { (label(&e.purpose, lang)) }
                                td {
                                    @for (i, c) in e.categories.iter().enumerate() {
                                        @if i > 0 { "، " }
                                        (label(c, lang))
                                    }
                                    @if e.categories.is_empty() { "—" }
                                }
                                td { (e.reason.as_deref().map(|r| label(r, lang)).unwrap_or("—")) }
                                td { (label(&e.channel, lang)) }
                            }
                        }
                    }
                }
            }
        }
        nav.paging aria-label=(t("صفحات القيود", "Pages of entries")) {
            @if asked.before > 0 {
                a href=(asked.link(0)) { (t("الأحدث", "Newest entries")) }
            }
            @if page.next_before_seq > 0 {
                @if asked.before > 0 { " · " }
                a href=(asked.link(page.next_before_seq)) { (t("قيود أقدم", "Older entries")) }
            }
        }
    }
}

/// The page filtered on one case, the other filters kept.
fn asked_case(asked: &Asked, case_id: &str) -> String {
    Asked {
        case_id: case_id.to_owned(),
        agency: asked.agency.clone(),
        person: asked.person.clone(),
        kind: asked.kind.clone(),
        decision: asked.decision.clone(),
        before: 0,
    }
    .link(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_the_filters_and_encode_them() {
        let a = Asked::parse(Some(
            "case_id=case_1&agency=health-cairo&kind=&before=17&person=psn%20x".into(),
        ));
        assert_eq!(a.before, 17);
        assert_eq!(
            a.link(5),
            "/audit?case_id=case_1&agency=health-cairo&person=psn+x&before=5"
        );
        assert_eq!(
            a.link(0),
            "/audit?case_id=case_1&agency=health-cairo&person=psn+x"
        );
        assert_eq!(Asked::parse(Some("before=-3".into())).before, 0);
    }
}
