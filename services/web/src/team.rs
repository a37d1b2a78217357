//! The supervisor's view of the team and the area: each caseworker's open cases against
//! the cap (25 a caseworker, the seeds' rule), the break-glass accesses awaiting review
//! (each reviewed here with a finding), the deadlines missed and the referrals that
//! reached no agency (urgent first), and the area's indicators. Ids, names of staff and
//! counts only: no child's data.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use himaya_proto::convert::{code, wire};
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use himaya_record::lifecycle::{BreakGlassOutcome, DeadlineKind};
use himaya_record::service_referral::MedicalCoverage;
use himaya_record::{CaseStatus, RiskLevel};
use maud::{html, Markup};
use tonic_types::StatusExt;

use crate::casework::{at, names, who};
use crate::lifecycle::agency_name;
use crate::people::Role;
use crate::referral::Form;
use crate::session::Session;
use crate::text::{label, lang_of, pick, Local};
use crate::{failed, html_page, hub, pages, posted, signed_in, App};

/// A review the hub refused: which access, what was sent, each problem by element id.
struct Refused {
    id: String,
    form: Form,
    errors: Vec<(String, String)>,
}

pub(crate) async fn team(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, &[Role::Supervisor]).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let param = |name: &str| {
        query.as_deref().and_then(|q| {
            form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        })
    };
    let governorate = param("governorate").unwrap_or_default();
    let done = param("done").filter(|d| d == "reviewed").map(|_| {
        pick(
            lang,
            "سُجّلت مراجعة الوصول الطارئ.",
            "The break-glass review was recorded.",
        )
    });
    render(&app, &s, lang, &governorate, None, done).await
}

/// The governorates a supervisor may ask the indicators of: (Arabic, English).
fn area(app: &App, s: &Session) -> Vec<(String, String)> {
    let own = app
        .settings
        .agencies
        .get(&s.person.agency_id)
        .map(|a| a.governorates.clone())
        .unwrap_or_default();
    let everywhere = own.iter().any(|g| g == "*");
    app.settings
        .gazetteer
        .governorates
        .iter()
        .filter(|g| everywhere || own.contains(&g.name_ar))
        .map(|g| (g.name_ar.clone(), g.name_en.clone()))
        .collect()
}

async fn render(
    app: &App,
    s: &Session,
    lang: Lang,
    governorate: &str,
    refused: Option<&Refused>,
    done: Option<&str>,
) -> Response {
    let places = area(app, s);
    // Only a governorate of the list is asked for; anything else is the whole area.
    let governorate = places
        .iter()
        .find(|(ar, _)| ar == governorate)
        .map(|(ar, _)| ar.clone())
        .unwrap_or_default();
    let mut oversight = pb::oversight_client::OversightClient::new(app.hub.channel());
    let mut w2 = pb::case_work_client::CaseWorkClient::new(app.hub.channel());
    let mut w3 = oversight.clone();
    let requests = (
        hub::request(
            &s.person,
            lang,
            pb::GetIndicatorsRequest {
                governorate: governorate.clone(),
            },
        ),
        hub::request(&s.person, lang, pb::ListEscalationsRequest::default()),
        hub::request(&s.person, lang, pb::ListBreakGlassRequest { all: true }),
    );
    let (i, e, b) = match requests {
        (Ok(i), Ok(e), Ok(b)) => (i, e, b),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => return failed(lang, Some(s), e),
    };
    let (indicators, escalations, accesses) = tokio::join!(
        oversight.get_indicators(i),
        w2.list_escalations(e),
        w3.list_break_glass(b)
    );
    let (indicators, escalations) = match (indicators, escalations) {
        (Ok(i), Ok(e)) => (i.into_inner(), e.into_inner().escalations),
        (Err(status), _) | (_, Err(status)) => return crate::hub_unavailable(lang, s, &status),
    };
    let accesses = accesses.map(|a| a.into_inner().accesses);
    let mut ids: Vec<String> = indicators
        .caseloads
        .iter()
        .map(|c| c.caseworker_id.clone())
        .collect();
    if let Ok(a) = &accesses {
        ids.extend(a.iter().filter_map(|a| a.reviewed_by.clone()));
    }
    let mut names = names(app, Some(&s.person.agency_id), &ids, lang).await;
    // Who broke the glass is often another agency's person (the emergency line's).
    if let Ok(a) = &accesses {
        let actors: Vec<String> = a.iter().map(|a| a.actor.clone()).collect();
        names.extend(crate::casework::names(app, None, &actors, lang).await);
    }
    let l = Local::new(lang, &app.settings.web);
    let t = |ar, en| pick(lang, ar, en);
    let (missed, undelivered): (Vec<&pb::Escalation>, Vec<&pb::Escalation>) = escalations
        .iter()
        .partition(|e| e.kind() != pb::DeadlineKind::Undelivered);
    let body = html! {
        h1 { (t("الفريق", "The team")) }
        @if let Some(d) = done { p.confirm role="status" { (d) } }
        @if let Some(r) = refused {
            div.error-summary role="alert" {
                h2 { (t("لم تُحفظ المراجعة", "The review was not saved")) }
                ul { @for (id, e) in &r.errors { li { a href={"#" (id)} { (field_name(id, lang)) } ": " (e) } } }
            }
        }
        h2 { (t("أعباء الأخصائيين", "Caseloads")) }
        @if indicators.caseloads.is_empty() {
            p { (t("لا يوجد أخصائيو حالة مسجلون بعد.", "No caseworkers are registered yet.")) }
        } @else {
        table {
            thead { tr { th { (t("الأخصائي", "Caseworker")) } th { (t("الحالات المفتوحة", "Open cases")) } th { (t("الحد", "Cap")) } } }
            tbody {
                @for c in &indicators.caseloads {
                    tr.overdue[c.open_cases >= c.limit] {
                        td { (who(&names, &c.caseworker_id)) }
                        td { (l.number(c.open_cases)) }
                        td { (l.number(c.limit)) @if c.open_cases >= c.limit { " · " strong { (t("مكتمل", "full")) } } }
                    }
                }
            }
        }
        }
        (break_glass(&l, s, app, accesses.as_deref(), &names, refused))
        h2 { (t("المواعيد الفائتة", "Missed deadlines")) }
        @if missed.is_empty() {
            p { (t("لا توجد مواعيد فائتة.", "No missed deadlines.")) }
        } @else {
            table {
                thead { tr { th { (t("الحالة", "Case")) } th { (t("ما فات موعده", "What was missed")) } th { (t("كان مستحقًا", "Was due")) } th { (t("الأولوية", "Priority")) } } }
                tbody {
                    @for e in &missed {
                        tr {
                            td { a href={"/cases/" (e.case_id)} { code { (e.case_id) } } }
                            td { (label(code::<DeadlineKind>(e.kind), lang)) @if let Some(r) = &e.ref_id { " " code { (r) } } }
                            td { (at(&l, &e.due_at)) }
                            td { (priority(lang, e.priority())) }
                        }
                    }
                }
            }
        }
        h2 { (t("إحالات لم تصل إلى أي جهة", "Referrals that reached no agency")) }
        @if undelivered.is_empty() {
            p { (t("لا توجد.", "None.")) }
        } @else {
            table {
                thead { tr { th { (t("الحالة", "Case")) } th { (t("الجهة", "Agency")) } th { (t("الأولوية", "Priority")) } th { (t("ما يلزم", "What to do")) } } }
                tbody {
                    @for e in &undelivered {
                        tr {
                            td { a href={"/cases/" (e.case_id)} { code { (e.case_id) } } }
                            td { @match e.agency_id.as_deref() { Some(a) if !a.is_empty() => bdi { (agency_name(&app.settings, a, lang)) }, _ => "—" } }
                            td { (priority(lang, e.priority())) }
                            td { (e.explanation.as_deref().unwrap_or("")) }
                        }
                    }
                }
            }
        }
        (indicators_view(&l, app, &indicators, &places, &governorate))
        p { a href="/cases" { (t("الحالات بانتظار أخصائي", "Cases waiting for a caseworker")) } }
    };
    html_page(
        StatusCode::OK,
        pages::page(lang, t("الفريق", "The team"), Some(s), body),
    )
}

fn priority(lang: Lang, p: pb::Priority) -> &'static str {
    match p {
        pb::Priority::Urgent => pick(lang, "عاجلة", "urgent"),
        _ => pick(lang, "عادية", "routine"),
    }
}

fn field_name(id: &str, lang: Lang) -> &'static str {
    match id.split_once('-').map(|(f, _)| f) {
        Some("outcome") => pick(lang, "نتيجة المراجعة", "Finding"),
        Some("notes") => pick(lang, "ملاحظات المراجعة", "Review notes"),
        _ => pick(lang, "مراجعة الوصول الطارئ", "Break-glass review"),
    }
}

/// The break-glass accesses awaiting review, each with its review form, and the last
/// ones reviewed.
fn break_glass(
    l: &Local,
    s: &Session,
    app: &App,
    accesses: Result<&[pb::BreakGlassAccess], &tonic::Status>,
    names: &std::collections::HashMap<String, String>,
    refused: Option<&Refused>,
) -> Markup {
    let lang = l.lang;
    let t = |ar, en| pick(lang, ar, en);
    let accesses = match accesses {
        Ok(a) => a,
        Err(status) => {
            return html! {
                h2 { (t("الوصول الطارئ بانتظار المراجعة", "Break-glass accesses to review")) }
                p.error { (t("تعذرت قراءة قائمة الوصول الطارئ الآن: ", "The break-glass accesses could not be read now: ")) (status.message()) }
            }
        }
    };
    let (pending, reviewed): (Vec<&pb::BreakGlassAccess>, Vec<&pb::BreakGlassAccess>) =
        accesses.iter().partition(|a| a.reviewed_at.is_none());
    let mut reviewed = reviewed;
    reviewed.sort_by(|a, b| b.reviewed_at.cmp(&a.reviewed_at));
    html! {
        h2 { (t("الوصول الطارئ بانتظار المراجعة", "Break-glass accesses to review")) }
        @if pending.is_empty() {
            p { (t("لا يوجد وصول طارئ بانتظار المراجعة.", "No break-glass access awaits review.")) }
        }
        @for a in &pending {
            @let mine = refused.filter(|r| r.id == a.break_glass_id);
            @let sent = |name: &str| mine.map(|r| r.form.get(name).to_owned()).unwrap_or_default();
            @let error = |id: &str| html! {
                @for (_, e) in mine.into_iter().flat_map(|r| r.errors.iter()).filter(|(i, _)| i == id) {
                    p.field-error id={(id) "-error"} { (e) }
                }
            };
            @let outcome_id = format!("outcome-{}", a.break_glass_id);
            @let notes_id = format!("notes-{}", a.break_glass_id);
            @let form_id = format!("review-{}", a.break_glass_id);
            section.break-glass aria-labelledby={"h-" (a.break_glass_id)} {
                h3 id={"h-" (a.break_glass_id)} { (t("وصول طارئ ", "Access ")) code { (a.break_glass_id) } }
                dl {
                    dt { (t("الحالة", "Case")) } dd { a href={"/cases/" (a.case_id)} { code { (a.case_id) } } }
                    dt { (t("الجهة", "Agency")) } dd { bdi { (agency_name(&app.settings, &a.agency_id, lang)) } }
                    dt { (t("من فتحه", "Opened by")) } dd { (who(names, &a.actor)) }
                    dt { (t("السبب", "Reason")) } dd { (label(&a.reason_code, lang)) }
                    dt { (t("المبرر كما كُتب", "Justification, as written")) } dd { span dir="auto" { (a.justification) } }
                    dt { (t("المدة", "Window")) } dd { (at(l, &a.granted_at)) " – " (at(l, &a.expires_at)) }
                    dt { (t("مرات القراءة", "Reads")) } dd { (l.number(a.reads)) }
                }
                form id=(form_id) method="post" action={"/team/break-glass/" (a.break_glass_id)} novalidate {
                    @for (_, e) in mine.into_iter().flat_map(|r| r.errors.iter()).filter(|(i, _)| *i == form_id) {
                        p.error role="alert" { (e) }
                    }
                    input type="hidden" name="csrf" value=(s.csrf);
                    fieldset id=(outcome_id) {
                        legend { (t("نتيجة المراجعة", "Finding")) }
                        @for (code, ar, en) in [("justified", "كان الوصول مبررًا", "The access was justified"), ("unjustified", "لم يكن الوصول مبررًا", "The access was not justified")] {
                            label.check { input type="radio" name="outcome" value=(code) checked[sent("outcome") == code]; " " (pick(lang, ar, en)) }
                        }
                        (error(&outcome_id))
                    }
                    label for=(notes_id) { (t("ملاحظات (ما الذي تحققت منه)", "Notes (what you checked)")) }
                    textarea id=(notes_id) name="notes" maxlength="4000" dir="auto" { (sent("notes")) }
                    (error(&notes_id))
                    button type="submit" { (t("تسجيل المراجعة", "Record the review")) }
                }
            }
        }
        @if !reviewed.is_empty() {
            h3 { (t("رُوجع مؤخرًا", "Reviewed recently")) }
            table {
                thead { tr { th { (t("الوصول", "Access")) } th { (t("الحالة", "Case")) } th { (t("النتيجة", "Finding")) } th { (t("من راجعه", "Reviewed by")) } th { (t("متى", "When")) } } }
                tbody {
                    @for a in reviewed.iter().take(10) {
                        tr {
                            td { code { (a.break_glass_id) } }
                            td { a href={"/cases/" (a.case_id)} { code { (a.case_id) } } }
                            td { (label(code::<BreakGlassOutcome>(a.outcome), lang)) }
                            td { (who(names, a.reviewed_by.as_deref().unwrap_or(""))) }
                            td { (at(l, a.reviewed_at.as_deref().unwrap_or(""))) }
                        }
                    }
                }
            }
        }
    }
}

fn indicators_view(
    l: &Local,
    app: &App,
    i: &pb::Indicators,
    places: &[(String, String)],
    governorate: &str,
) -> Markup {
    let lang = l.lang;
    let t = |ar, en| pick(lang, ar, en);
    let percent = |r: f64| l.percent(r);
    let agency = |id: &str| html! { bdi { (agency_name(&app.settings, id, lang)) } };
    html! {
        h2 { (t("مؤشرات المنطقة", "Indicators for your area")) }
        form.inline method="get" action="/team" {
            label for="governorate" { (t("المحافظة", "Governorate")) }
            select #governorate name="governorate" {
                option value="" { (t("كل منطقتك", "All of your area")) }
                @for (ar, en) in places {
                    option value=(ar) selected[governorate == ar] { (match lang { Lang::Arabic => ar, Lang::English => en }) }
                }
            }
            button.secondary type="submit" { (t("عرض", "Show")) }
        }
        p.hint { (t("حُسبت في ", "Computed at ")) (at(l, &i.computed_at)) }
        h3 { (t("المواعيد المتأخرة حسب النوع", "Overdue deadlines by kind")) }
        @if i.overdue.is_empty() { p { (t("لا توجد.", "None.")) } } @else {
            table {
                thead { tr { th { (t("النوع", "Kind")) } th { (t("متأخرة ولم تُصعّد بعد", "Past due, not yet escalated")) } th { (t("صُعّدت", "Escalated")) } } }
                tbody { @for o in &i.overdue { tr { td { (label(code::<DeadlineKind>(o.kind), lang)) } td { (l.number(o.open_past_due)) } td { (l.number(o.escalated)) } } } }
            }
        }
        h3 { (t("الحالات حسب المحافظة والوضع والخطر", "Cases by governorate, status and risk")) }
        @if i.cases.is_empty() { p { (t("لا توجد.", "None.")) } } @else {
            table {
                thead { tr { th { (t("المحافظة", "Governorate")) } th { (t("الوضع", "Status")) } th { (t("الخطر", "Risk")) } th { (t("العدد", "Count")) } } }
                tbody { @for c in &i.cases { tr { td { bdi { (c.governorate) } } td { (label(code::<CaseStatus>(c.status), lang)) } td { (label(code::<RiskLevel>(c.risk_level), lang)) } td { (l.number(c.count)) } } } }
            }
        }
        h3 { (t("إحالات الخدمة حسب الجهة المستقبلة", "Service referrals by receiving agency")) }
        @if i.service_referrals.is_empty() { p { (t("لا توجد.", "None.")) } } @else {
            table {
                thead { tr { th { (t("الجهة", "Agency")) } th { (t("أُرسلت", "Sent")) } th { (t("قُبلت", "Accepted")) } th { (t("رُفضت", "Rejected")) } th { (t("بلا رد", "Unanswered")) } th { (t("نسبة القبول", "Acceptance")) } th { (t("وسيط زمن الرد (ساعات)", "Median answer (hours)")) } } }
                tbody { @for r in &i.service_referrals { tr { td { (agency(&r.agency_id)) } td { (l.number(r.sent)) } td { (l.number(r.accepted)) } td { (l.number(r.rejected)) } td { (l.number(r.unanswered)) } td { (percent(r.acceptance_rate)) } td { (l.decimal(r.median_answer_hours, 1)) } } } }
            }
        }
        h3 { (t("تسليم الإحالات حسب الجهة", "Referral deliveries by agency")) }
        @if i.agencies.is_empty() { p { (t("لا توجد.", "None.")) } } @else {
            table {
                thead { tr { th { (t("الجهة", "Agency")) } th { (t("سُلّمت", "Delivered")) } th { (t("رُفضت", "Rejected")) } th { (t("نسبة القبول", "Acceptance")) } th { (t("وسيط زمن الرد (ساعات)", "Median response (hours)")) } } }
                tbody { @for a in &i.agencies { tr { td { (agency(&a.agency_id)) } td { (l.number(a.delivered)) } td { (l.number(a.rejected)) } td { (percent(a.acceptance_rate)) } td { (l.decimal(a.median_response_ms / 3_600_000.0, 1)) } } } }
            }
        }
        h3 { (t("الإحالات الصحية حسب تغطية التكاليف", "Health referrals by who pays")) }
        @if i.medical_coverage.is_empty() { p { (t("لا توجد.", "None.")) } } @else {
            table {
                thead { tr { th { (t("المحافظة", "Governorate")) } th { (t("التغطية", "Coverage")) } th { (t("العدد", "Count")) } } }
                tbody { @for m in &i.medical_coverage { tr { td { bdi { (m.governorate) } } td { (crate::lifecycle::coverage_text(code::<MedicalCoverage>(m.coverage), lang)) } td { (l.number(m.count)) } } } }
            }
        }
    }
}

/// A break-glass access id as the hub makes them (`bkg_` and hex): the only kind of value
/// that goes into the page's element ids.
fn access_id(raw: &str) -> Option<&str> {
    let rest = raw.strip_prefix("bkg_")?;
    (!rest.is_empty() && rest.len() <= 64 && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then_some(raw)
}

/// A supervisor's review of a break-glass access: justified or not, with notes.
pub(crate) async fn review_break_glass(
    State(app): State<App>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let (s, f) = match posted(&app, &headers, &body, &[Role::Supervisor]).await {
        Ok(posted) => posted,
        Err(r) => return r,
    };
    let Some(id) = access_id(&id).map(str::to_owned) else {
        return html_page(
            StatusCode::NOT_FOUND,
            pages::problem(
                lang,
                Some(&s),
                pick(
                    lang,
                    "لا يوجد وصول طارئ بهذا الرقم.",
                    "There is no break-glass access with this id.",
                ),
                pick(
                    lang,
                    "افتح صفحة الفريق واختر الوصول من القائمة.",
                    "Open the team page and pick the access from the list.",
                ),
            ),
        );
    };
    let msg = pb::ReviewBreakGlassRequest {
        break_glass_id: id.clone(),
        actor: s.person.person_id.clone(),
        // A value outside the vocabulary goes as UNSPECIFIED: the hub refuses it, naming
        // the field and the choices, shown next to the finding.
        outcome: wire::<BreakGlassOutcome>(f.get("outcome")),
        notes: f.get("notes").to_owned(),
    };
    let answer = match hub::request(&s.person, lang, msg) {
        Ok(r) => {
            pb::oversight_client::OversightClient::new(app.hub.channel())
                .review_break_glass(r)
                .await
        }
        Err(e) => return failed(lang, Some(&s), e),
    };
    let status = match answer {
        Ok(_) => {
            tracing::info!(break_glass_id = %id, "break-glass access reviewed from the web");
            return Redirect::to("/team?done=reviewed").into_response();
        }
        Err(status) => status,
    };
    tracing::warn!(break_glass_id = %id, code = ?status.code(), "the hub refused a break-glass review");
    let form_id = format!("review-{id}");
    let errors: Vec<(String, String)> = match status.code() {
        tonic::Code::InvalidArgument => {
            let found: Vec<(String, String)> = status
                .get_details_bad_request()
                .map(|b| b.field_violations)
                .unwrap_or_default()
                .into_iter()
                .map(|v| {
                    let text = v
                        .description
                        .split_once("] ")
                        .map(|(_, t)| t.to_owned())
                        .unwrap_or(v.description);
                    let input = match v.field.as_str() {
                        "outcome" => format!("outcome-{id}"),
                        "notes" => format!("notes-{id}"),
                        _ => form_id.clone(),
                    };
                    (input, text)
                })
                .collect();
            match found.is_empty() {
                true => vec![(form_id, status.message().to_owned())],
                false => found,
            }
        }
        tonic::Code::FailedPrecondition => {
            vec![(form_id, status.message().to_owned())]
        }
        _ => {
            return html_page(
                match status.code() {
                    tonic::Code::PermissionDenied | tonic::Code::NotFound => StatusCode::FORBIDDEN,
                    _ => StatusCode::BAD_GATEWAY,
                },
                pages::problem(
                    lang,
                    Some(&s),
                    status.message(),
                    pick(lang, "ارجع إلى صفحة الفريق.", "Go back to the team page."),
                ),
            )
        }
    };
    let refused = Refused {
        id,
        form: f,
        errors,
    };
    let mut page = render(&app, &s, lang, "", Some(&refused), None).await;
    if page.status() == StatusCode::OK {
        *page.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    page
}
