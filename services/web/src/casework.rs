//! The caseworker's and the supervisor's screens: my cases (overdue first), the
//! unassigned queue, and a case as the redactor lets the ministry see it: the record, its
//! consents, assessment, plan, service referrals (FHIR Task states) and history, in the
//! page's language, with the moves the case's status allows (`lifecycle`). A caseworker
//! opens only the cases assigned to them; their staff id in the case-owning ministry is
//! their person id (`psn_…`).

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use himaya_proto::convert::{code, codes, WireEnum};
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use himaya_record::consent::{ConsentMethod, LegalBasis, ProvisionKind};
use himaya_record::lifecycle::DeadlineKind;
use himaya_record::service_referral::{AbilityToPay, MedicalCoverage, TaskState};
use himaya_record::{
    AgencyType, CaseStatus, ConsentGiver, DataCategory, Purpose, RiskLevel, ServiceType,
};
use maud::{html, Markup};
use serde_json::Value;

use crate::lifecycle::{self, agency_name, Attempt, CaseState};
use crate::people::{Person, Role};
use crate::session::Session;
use crate::text::{label, lang_of, pick, Local};
use crate::{failed, html_page, hub, pages, signed_in, App};

const CASE_PEOPLE: &[Role] = &[Role::Caseworker, Role::Supervisor];

fn work(app: &App) -> pb::case_work_client::CaseWorkClient<tonic::transport::Channel> {
    pb::case_work_client::CaseWorkClient::new(app.hub.channel())
}

/// The list a person sees: a caseworker their own cases, a supervisor the queue.
fn asked(person: &Person) -> pb::ListCasesRequest {
    match person.has(Role::Caseworker) {
        true => pb::ListCasesRequest {
            caseworker_id: person.person_id.clone(),
            ..Default::default()
        },
        false => pb::ListCasesRequest {
            unassigned: true,
            ..Default::default()
        },
    }
}

/// The names of the people of `agency` (of any agency: `None`) among `ids` (person ids,
/// which are also their staff ids), as they are shown: the Latin transliteration on an
/// English page when there is one. Ids of no one known are left out; a failed read
/// names no one.
pub(crate) async fn names(
    app: &App,
    agency: Option<&str>,
    ids: &[String],
    lang: Lang,
) -> HashMap<String, String> {
    let ids: Vec<&String> = ids.iter().filter(|i| i.starts_with("psn_")).collect();
    if ids.is_empty() {
        return HashMap::new();
    }
    let rows: Result<Vec<(String, String, Option<String>)>, sqlx::Error> = sqlx::query_as(
        "SELECT person_id, name_ar, name_latin FROM persons
          WHERE ($1::text IS NULL OR agency_id = $1) AND person_id = ANY($2)",
    )
    .bind(agency)
    .bind(ids)
    .fetch_all(&app.pool)
    .await;
    match rows {
        Ok(rows) => rows
            .into_iter()
            .map(|(id, ar, latin)| {
                let name = match (lang, latin) {
                    (Lang::English, Some(l)) if !l.is_empty() => l,
                    _ => ar,
                };
                (id, name)
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "the names of staff could not be read");
            HashMap::new()
        }
    }
}

/// Someone named in a record: their name when they are one of the agency's people (with
/// the id, smaller), else the reference as recorded. Always isolated.
pub(crate) fn who(names: &HashMap<String, String>, id: &str) -> Markup {
    html! {
        @match names.get(id) {
            Some(n) => { bdi { (n) } " " small { code { (id) } } }
            None => bdi { (id) },
        }
    }
}

pub(crate) async fn my_cases(State(app): State<App>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, CASE_PEOPLE).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let req = match hub::request(&s.person, lang, asked(&s.person)) {
        Ok(r) => r,
        Err(e) => return failed(lang, Some(&s), e),
    };
    let cases = match work(&app).list_cases(req).await {
        Ok(r) => r.into_inner().cases,
        Err(status) => return refused(lang, &s, &status),
    };
    let l = Local::new(lang, &app.settings.web);
    let t = |ar, en| pick(lang, ar, en);
    let title = match s.person.has(Role::Caseworker) {
        true => t("حالاتي", "My cases"),
        false => t("الحالات بانتظار أخصائي", "Cases waiting for a caseworker"),
    };
    let body = html! {
        h1 { (title) }
        @if cases.is_empty() {
            p { (t("لا توجد حالات.", "No cases.")) }
        } @else {
            table {
                thead { tr {
                    th { (t("الحالة", "Case")) } th { (t("الوضع", "Status")) } th { (t("الخطر", "Risk")) }
                    th { (t("الموعد التالي", "Next deadline")) }
                } }
                tbody {
                    @for c in &cases {
                        tr.overdue[c.overdue] {
                            td { a href={"/cases/" (c.case_id)} { code { (c.case_id) } } }
                            td { (label(code::<CaseStatus>(c.status), lang)) }
                            td { (label(code::<RiskLevel>(c.risk_level), lang)) @if c.priority() == pb::Priority::Urgent { " · " strong { (t("عاجلة", "urgent")) } } }
                            td {
                                @if c.overdue { strong { (t("متأخر: ", "Overdue: ")) } }
                                (label(code::<DeadlineKind>(c.next_deadline_kind), lang)) " " (at(&l, &c.next_deadline_at))
                            }
                        }
                    }
                }
            }
        }
    };
    html_page(StatusCode::OK, pages::page(lang, title, Some(&s), body))
}

/// A time the hub sent (RFC 3339, or a bare date) in the page: in the page's language,
/// digits and zone, the machine-readable `datetime` as it came. Isolated (`bdi`) so the
/// digits next to it do not run into it, but in the page's direction: an Arabic date read
/// left to right would put its day and year in the wrong order.
pub(crate) fn at(l: &Local, t: &str) -> Markup {
    html! { bdi { time datetime=(t) { (l.time_text(t)) } } }
}

pub(crate) async fn case_page(
    State(app): State<App>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, CASE_PEOPLE).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let done = query.as_deref().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "done")
            .and_then(|(_, v)| lifecycle::done_text(&v, lang))
    });
    render(&app, &s, lang, &case_id, None, done).await
}

/// The case page, with a refused form (`attempt`) filled in and its problems shown, or
/// the confirmation of a move just made (`done`).
pub(crate) async fn render(
    app: &App,
    s: &Session,
    lang: Lang,
    case_id: &str,
    attempt: Option<&Attempt>,
    done: Option<&str>,
) -> Response {
    // A caseworker works the cases assigned to them, and reads only those: checked
    // before the case is read, so nothing is disclosed for a page that is refused.
    if s.person.has(Role::Caseworker) && !s.person.has(Role::Supervisor) {
        let own = pb::ListCasesRequest {
            caseworker_id: s.person.person_id.clone(),
            limit: 200,
            include_closed: true,
            ..Default::default()
        };
        let own = match hub::request(&s.person, lang, own) {
            Ok(r) => work(app).list_cases(r).await,
            Err(e) => return failed(lang, Some(s), e),
        };
        let mine = match own {
            Ok(l) => l.into_inner().cases.iter().any(|c| c.case_id == case_id),
            Err(status) => return refused(lang, s, &status),
        };
        if !mine {
            tracing::warn!(person = %s.person.person_id, "case page refused: not the person's case");
            return html_page(
                StatusCode::FORBIDDEN,
                pages::problem(
                    lang,
                    Some(s),
                    pick(
                        lang,
                        "هذه الحالة ليست من حالاتك.",
                        "This case is not one of yours.",
                    ),
                    pick(
                        lang,
                        "افتح حالاتك من قائمة «حالاتي».",
                        "Open your cases from “My cases”.",
                    ),
                ),
            );
        }
    }
    let read = pb::GetCaseRequest {
        case_id: case_id.to_owned(),
        purpose: pb::Purpose::ServiceProvision.into(),
    };
    let shared = match hub::request(&s.person, lang, read) {
        Ok(r) => {
            pb::cases_client::CasesClient::new(app.hub.channel())
                .get_case(r)
                .await
        }
        Err(e) => return failed(lang, Some(s), e),
    };
    let shared = match shared {
        Ok(r) => r.into_inner(),
        Err(status) => return refused(lang, s, &status),
    };
    let doc: Value = serde_json::from_str(&shared.document_json).unwrap_or(Value::Null);
    let id = shared.case_id.clone();
    let requests = (
        hub::request(
            &s.person,
            lang,
            pb::GetHistoryRequest {
                case_id: id.clone(),
            },
        ),
        hub::request(
            &s.person,
            lang,
            pb::ListConsentsRequest {
                case_id: id.clone(),
            },
        ),
        hub::request(
            &s.person,
            lang,
            pb::ListServiceReferralsRequest {
                case_id: id.clone(),
                state: pb::ServiceReferralState::Unspecified.into(),
            },
        ),
        hub::request(&s.person, lang, pb::GetIndicatorsRequest::default()),
    );
    let (history, consents, referrals, indicators) = match requests {
        (Ok(h), Ok(c), Ok(r), Ok(i)) => (h, c, r, i),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            return failed(lang, Some(s), e)
        }
    };
    let supervisor = s.person.has(Role::Supervisor);
    let mut w1 = work(app);
    let mut c2 = pb::consents_client::ConsentsClient::new(app.hub.channel());
    let mut o3 = pb::oversight_client::OversightClient::new(app.hub.channel());
    let mut sr = pb::service_referrals_client::ServiceReferralsClient::new(app.hub.channel());
    let (history, consents, referrals, caseloads) = tokio::join!(
        w1.get_history(history),
        c2.list_consents(consents),
        sr.list_service_referrals(referrals),
        async {
            match supervisor {
                // The assignment form lists the agency's caseworkers with their loads.
                true => o3
                    .get_indicators(indicators)
                    .await
                    .map(|i| i.into_inner().caseloads),
                false => Ok(Vec::new()),
            }
        }
    );
    let history = history.map(|h| h.into_inner().entries);
    let consents = consents.map(|c| c.into_inner().consents);
    let referrals = referrals.map(|r| r.into_inner().referrals);
    let caseloads = caseloads.unwrap_or_default();
    // Everyone the page names who may be one of the agency's people.
    let mut ids: Vec<String> = caseloads.iter().map(|c| c.caseworker_id.clone()).collect();
    if let Ok(h) = &history {
        ids.extend(h.iter().map(|e| e.actor.clone()));
        ids.extend(
            h.iter()
                .filter_map(|e| e.change.strip_prefix("assigned: "))
                .map(str::to_owned),
        );
    }
    for key in ["caseworker_id", "supervisor_id"] {
        if let Some(v) = doc["assignment"][key].as_str() {
            ids.push(v.to_owned());
        }
    }
    ids.sort();
    ids.dedup();
    let names = names(app, Some(&s.person.agency_id), &ids, lang).await;
    let caseworkers: Vec<(String, String, i64, i64)> = caseloads
        .iter()
        .map(|c| {
            let name = names
                .get(&c.caseworker_id)
                .cloned()
                .unwrap_or_else(|| c.caseworker_id.clone());
            (c.caseworker_id.clone(), name, c.open_cases, c.limit)
        })
        .collect();
    let no_referrals = Vec::new();
    let state = CaseState {
        case_id: &shared.case_id,
        version: shared.version,
        status: doc["status"].as_str().unwrap_or(""),
        doc: &doc,
        referrals: referrals.as_deref().unwrap_or(&no_referrals),
        caseworkers: &caseworkers,
    };
    let view = View {
        lang,
        l: Local::new(lang, &app.settings.web),
        settings: &app.settings,
        names: &names,
    };
    let t = |ar, en| pick(lang, ar, en);
    let body = html! {
        @if let Some(d) = done {
            p.confirm role="status" { (d) }
        }
        @if let Some(a) = attempt {
            div.error-summary role="alert" {
                h2 { (t("لم يُحفظ التغيير", "The change was not saved")) }
                ul {
                    @for (id, e) in &a.errors {
                        li { a href={"#" (id)} { (lifecycle::field_name(id, &view.l)) } ": " (e) }
                    }
                }
            }
        }
        (view.record(&shared, &doc))
        (view.consents(consents.as_deref()))
        (view.assessment(&doc))
        (view.plan(s, &state, attempt))
        (view.referrals(referrals.as_deref()))
        (view.history(history.as_deref()))
        (lifecycle::forms(lang, s, &app.settings, &state, attempt))
        p { a href="/cases" { (t("العودة إلى القائمة", "Back to the list")) } }
    };
    html_page(
        StatusCode::OK,
        pages::page(lang, pick(lang, "الحالة", "Case"), Some(s), body),
    )
}

/// The sections of a case page, in the page's language.
struct View<'a> {
    lang: Lang,
    /// The page's language with the deployment's digits and zone.
    l: Local,
    settings: &'a himaya_settings::Settings,
    names: &'a HashMap<String, String>,
}

/// A section the hub would not give: said, and the rest of the page still shown.
fn unread(lang: Lang, status: &tonic::Status) -> Markup {
    tracing::warn!(code = ?status.code(), "a part of a case page could not be read");
    html! {
        p.error { (pick(lang, "تعذرت قراءة هذا الجزء الآن: ", "This part could not be read now: ")) (status.message()) }
    }
}

impl View<'_> {
    fn t(&self, ar: &'static str, en: &'static str) -> &'static str {
        pick(self.lang, ar, en)
    }

    /// A number the hub wrote into a history line, in the page's digits; text that is
    /// not a whole number is shown as recorded.
    fn number_text(&self, n: &str) -> String {
        match n.trim().parse::<i64>() {
            Ok(n) => self.l.number(n),
            Err(_) => n.to_owned(),
        }
    }

    /// Who made a change: one of the agency's people, an agency (a delivery, a referral),
    /// or a reference as recorded.
    fn actor(&self, id: &str) -> Markup {
        match self.settings.agencies.contains_key(id) && !self.names.contains_key(id) {
            true => self.agency(id),
            false => who(self.names, id),
        }
    }

    fn agency(&self, id: &str) -> Markup {
        html! { bdi { (agency_name(self.settings, id, self.lang)) } }
    }

    /// The record: every text a person typed is isolated (`bdi`, `dir=auto`).
    fn record(&self, shared: &pb::SharedCase, doc: &Value) -> Markup {
        let lang = self.lang;
        let text = |v: &Value| v.as_str().unwrap_or("—").to_owned();
        let child = &doc["child"];
        let acceptance = &doc["acceptance"];
        let closure = &doc["closure"];
        let code = |v: &Value| v.as_str().unwrap_or("").to_owned();
        html! {
            h1 { (self.t("الحالة", "Case")) " " code { (shared.case_id) } }
            dl {
                dt { (self.t("الطفل", "Child")) } dd { bdi { (text(&child["name"]["as_given"])) } }
                dt { (self.t("الجنس", "Sex")) } dd { (label(&code(&child["sex"]), lang)) }
                dt { (self.t("المحافظة", "Governorate")) } dd { bdi { (text(&child["governorate"])) } }
                dt { (self.t("الوضع", "Status")) } dd { (label(&code(&doc["status"]), lang)) }
                dt { (self.t("الخطر", "Risk")) } dd { (label(&code(&doc["risk_level"]), lang)) }
                @if let Some(cw) = doc["assignment"]["caseworker_id"].as_str() {
                    dt { (self.t("أخصائي الحالة", "Caseworker")) } dd { (who(self.names, cw)) }
                }
                @if acceptance.is_object() {
                    dt { (self.t("قرار القبول", "Acceptance")) }
                    dd {
                        (label(&code(&acceptance["decision"]), lang))
                        @for c in acceptance["vulnerability_criteria"].as_array().into_iter().flatten() {
                            " · " (label(c.as_str().unwrap_or(""), lang))
                        }
                        @if let Some(to) = acceptance["referred_on_to"].as_str() { " → " (self.agency(to)) }
                        @if let Some(r) = acceptance["reason"].as_str() { br; span dir="auto" { (r) } }
                    }
                }
                @if closure.is_object() {
                    dt { (self.t("سبب الإغلاق", "Closed because")) } dd { (lifecycle::closure_text(&code(&closure["reason"]), lang)) }
                    dt { (self.t("التقييم النهائي", "Final evaluation")) } dd { span dir="auto" { (text(&closure["final_evaluation"])) } }
                    dt { (self.t("التوصيات", "Recommendations")) } dd { span dir="auto" { (text(&closure["recommendations"])) } }
                }
            }
            h2 { (self.t("مخاوف الحماية", "Protection concerns")) }
            ul {
                @for c in doc["concerns"].as_array().into_iter().flatten() {
                    li { (label(c["kind"].as_str().unwrap_or(""), lang)) }
                }
            }
            @if let Some(n) = doc["referral"]["narrative"].as_str() {
                h2 { (self.t("ما لاحظه المُحيل", "What the referrer saw")) }
                p dir="auto" { (n) }
            }
        }
    }

    fn consents(&self, consents: Result<&[pb::ConsentView], &tonic::Status>) -> Markup {
        let lang = self.lang;
        let list = |v: Vec<&str>| -> String {
            match v.is_empty() {
                true => self.t("الكل", "any").to_owned(),
                false => v
                    .iter()
                    .map(|x| label(x, lang))
                    .collect::<Vec<_>>()
                    .join(pick(lang, "، ", ", ")),
            }
        };
        fn given(c: &'static str) -> Option<&'static str> {
            Some(c).filter(|c| !c.is_empty())
        }
        html! {
            h2 { (self.t("الموافقات والأسس القانونية", "Consents and legal bases")) }
            @match consents {
                Err(status) => (unread(lang, status)),
                Ok([]) => p { (self.t("لا توجد موافقات مسجلة.", "No consents are recorded.")) },
                Ok(consents) => table {
                    thead { tr {
                        th { (self.t("الموافقة", "Consent")) } th { (self.t("من أو على أي أساس", "Given by, or basis")) }
                        th { (self.t("المدة", "Period")) } th { (self.t("الحالة", "State")) } th { (self.t("ما تسمح به أو تمنعه", "What it permits or denies")) }
                    } }
                    tbody {
                        @for c in consents {
                            tr {
                                td { code { (c.consent_id) } }
                                td {
                                    @if let Some(g) = given(code::<ConsentGiver>(c.given_by)) { (label(g, lang)) }
                                    @if let Some(m) = given(code::<ConsentMethod>(c.method)) { " (" (label(m, lang)) ")" }
                                    @if let Some(b) = given(code::<LegalBasis>(c.legal_basis)) { (label(b, lang)) }
                                    @if let Some(r) = &c.legal_reference { " · " bdi { (r) } }
                                }
                                td { (at(&self.l, &c.valid_from)) " – " @match c.valid_until.as_deref() { Some(u) => (at(&self.l, u)), None => (self.t("حتى السحب", "until withdrawn")) } }
                                td {
                                    @if let Some(w) = &c.withdrawn_at { (self.t("سُحبت في ", "Withdrawn on ")) (at(&self.l, w)) }
                                    @else if c.active { (self.t("سارية", "Active")) }
                                    @else { (self.t("غير سارية الآن", "Not in force now")) }
                                }
                                td {
                                    @if c.provisions.is_empty() { (self.t("كل المشاركة وفق سياسة المشاركة", "All sharing the sharing policy allows")) }
                                    ul {
                                        @for p in &c.provisions {
                                            li {
                                                strong { (label(code::<ProvisionKind>(p.kind), lang)) } ": "
                                                @match (&p.recipient_agency, given(code::<AgencyType>(p.recipient_type))) {
                                                    (Some(a), _) => (self.agency(a)),
                                                    (None, Some(t)) => (label(t, lang)),
                                                    (None, None) => (self.t("أي جهة", "any agency")),
                                                }
                                                " · " (list(codes::<Purpose>(&p.purposes))) " · " (list(codes::<DataCategory>(&p.categories)))
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
            }
        }
    }

    fn assessment(&self, doc: &Value) -> Markup {
        let lang = self.lang;
        let a = &doc["assessment"];
        let texts = |k: &str| -> Vec<String> {
            a[k].as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        html! {
            h2 { (self.t("التقييم الشامل", "Comprehensive assessment")) }
            @if !a.is_object() {
                p { (self.t("لم يُسجّل بعد.", "Not recorded yet.")) }
            } @else {
                p.hint { (self.t("سُجّل في ", "Recorded on ")) (at(&self.l, a["assessed_at"].as_str().unwrap_or(""))) }
                h3 { (self.t("عوامل الخطر", "Risk factors")) }
                ul { @for r in texts("risk_factors") { li dir="auto" { (r) } } }
                h3 { (self.t("عوامل الحماية", "Protective factors")) }
                @let protective = texts("protective_factors");
                @if protective.is_empty() { p { "—" } }
                ul { @for r in protective { li dir="auto" { (r) } } }
                h3 { (self.t("الاحتياجات", "Needs")) }
                dl {
                    @for n in a["needs"].as_array().into_iter().flatten() {
                        dt { (label(n["domain"].as_str().unwrap_or(""), lang)) }
                        dd dir="auto" { (n["description"].as_str().unwrap_or("")) }
                    }
                }
            }
        }
    }

    fn plan(&self, s: &Session, c: &CaseState, attempt: Option<&Attempt>) -> Markup {
        let lang = self.lang;
        let plan = &c.doc["plan"];
        // Today where the deployment is: an action due yesterday there is overdue.
        let today = chrono::Utc::now()
            .with_timezone(&self.l.zone)
            .date_naive()
            .format("%Y-%m-%d")
            .to_string();
        html! {
            h2 { (self.t("خطة الحماية", "Protection plan")) }
            @if !plan.is_object() {
                p { (self.t("لم تُوضع بعد.", "Not set yet.")) }
            }
            @for g in plan["goals"].as_array().into_iter().flatten() {
                h3 dir="auto" { (g["description"].as_str().unwrap_or("")) }
                table {
                    thead { tr {
                        th { (self.t("الإجراء", "Action")) } th { (self.t("الجهة المسؤولة", "Responsible agency")) }
                        th { (self.t("الموعد", "Due")) } th { (self.t("الوضع", "State")) } th { (self.t("ما يمكن فعله", "What can be done")) }
                    } }
                    tbody {
                        @for a in g["actions"].as_array().into_iter().flatten() {
                            @let id = a["action_id"].as_str().unwrap_or("");
                            @let due = a["due_on"].as_str().unwrap_or("");
                            @let done = a["done"].as_bool().unwrap_or(false);
                            tr.overdue[!done && due < today.as_str()] {
                                td { code { (id) } " " span dir="auto" { (a["description"].as_str().unwrap_or("")) } br; small { (label(a["service_type"].as_str().unwrap_or(""), lang)) } }
                                td { (self.agency(a["responsible_agency"].as_str().unwrap_or(""))) }
                                td { (at(&self.l, due)) }
                                td {
                                    @if done { (self.t("منجز", "Done")) } @else { (self.t("مفتوح", "Open")) }
                                    @if let Some(r) = lifecycle::live_referral(c.referrals, id) {
                                        br; small { (self.t("إحالة: ", "Referral: ")) (label(code::<TaskState>(r.state), lang)) }
                                    }
                                }
                                td { (lifecycle::action_forms(lang, s, c, a, attempt)) }
                            }
                        }
                    }
                }
            }
        }
    }

    fn referrals(&self, referrals: Result<&[pb::ServiceReferral], &tonic::Status>) -> Markup {
        let lang = self.lang;
        html! {
            h2 { (self.t("إحالات الخدمة", "Service referrals")) }
            @match referrals {
                Err(status) => (unread(lang, status)),
                Ok([]) => p { (self.t("لا توجد إحالات خدمة.", "No service referrals.")) },
                Ok(list) => table {
                    thead { tr {
                        th { (self.t("الإحالة", "Referral")) } th { (self.t("إلى", "To")) } th { (self.t("الوضع", "State")) }
                        th { (self.t("التكاليف الطبية", "Medical costs")) } th { (self.t("ما جرى", "What happened")) }
                    } }
                    tbody {
                        @for r in list {
                            tr {
                                td { code { (r.service_referral_id) } br; (self.t("الإجراء ", "Action ")) code { (r.action_id) } " · " (label(code::<ServiceType>(r.service_type), lang)) }
                                td { (self.agency(&r.to_agency)) }
                                td {
                                    strong { (label(code::<TaskState>(r.state), lang)) }
                                    @if let Some(reason) = &r.reason { br; span dir="auto" { (reason) } }
                                    @if !r.answer_due_at.is_empty() { br; small { (self.t("الرد مطلوب قبل ", "Answer due by ")) (at(&self.l, &r.answer_due_at)) } }
                                }
                                td {
                                    @match (MedicalCoverage::from_wire(r.medical_coverage), AbilityToPay::from_wire(r.ability_to_pay)) {
                                        (None, _) => "—",
                                        (Some(c), a) => {
                                            (lifecycle::coverage_text(c.as_str(), lang))
                                            @if let Some(a) = a { br; small { (lifecycle::ability_text(a.as_str(), lang)) } }
                                        }
                                    }
                                }
                                td {
                                    ol.changes {
                                        @for ch in &r.changes {
                                            li { (at(&self.l, &ch.at)) " · " (label(code::<TaskState>(ch.state), lang)) " · " (self.agency(&ch.agency_id)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                },
            }
        }
    }

    fn history(&self, history: Result<&[pb::HistoryEntry], &tonic::Status>) -> Markup {
        html! {
            h2 { (self.t("السجل", "History")) }
            @match history {
                Err(status) => (unread(self.lang, status)),
                Ok(entries) => ol.history {
                    @for e in entries {
                        li { (at(&self.l, &e.at)) " · " (self.change(&e.change)) " · " (self.actor(&e.actor)) }
                    }
                },
            }
        }
    }

    /// A history line, which the hub writes in English codes, in the page's language.
    /// A line of a shape not known here is shown as recorded, isolated.
    fn change(&self, change: &str) -> Markup {
        let lang = self.lang;
        let t = |ar, en| pick(lang, ar, en);
        let l = |c: &str| label(c, lang).to_owned();
        if matches!(change, "registered" | "referred_on" | "declined") {
            return html! { (t("قرار القبول: ", "Acceptance decision: ")) (l(change)) };
        }
        if change == "assessed" {
            return html! { (t("سُجّل التقييم الشامل", "Comprehensive assessment recorded")) };
        }
        if let Some(r) = change.strip_prefix("opened by referral ") {
            return html! { (t("فُتحت بالإحالة ", "Opened by referral ")) code { (r) } };
        }
        if let Some(w) = change.strip_prefix("assigned: ") {
            return html! { (t("أُسندت إلى ", "Assigned to ")) (who(self.names, w)) };
        }
        if let Some(k) = change.strip_prefix("reviewed: ") {
            return html! { (t("مراجعة: ", "Review: ")) (l(k)) };
        }
        if let Some(n) = change
            .strip_prefix("plan set: ")
            .and_then(|r| r.strip_suffix(" actions"))
        {
            return html! { (t("وُضعت خطة الحماية (عدد الإجراءات: ", "Protection plan set (actions: ")) (self.number_text(n)) ")" };
        }
        if let Some(a) = change.strip_prefix("action done: ") {
            return html! { (t("أُنجز الإجراء ", "Action done: ")) code { (a) } };
        }
        if let Some(r) = change.strip_prefix("closed: ") {
            return html! { (t("أُغلقت: ", "Closed: ")) (lifecycle::closure_text(r, lang)) };
        }
        if let Some(r) = change.strip_prefix("reopened: ") {
            return html! { (t("أُعيد فتحها: ", "Reopened: ")) bdi { (r) } };
        }
        if let Some(c) = change.strip_prefix("consent granted: ") {
            return html! { (t("سُجّلت الموافقة ", "Consent recorded: ")) code { (c) } };
        }
        if let Some(c) = change.strip_prefix("consent withdrawn: ") {
            return html! { (t("سُحبت الموافقة ", "Consent withdrawn: ")) code { (c) } };
        }
        if let Some((c, rev)) = change
            .strip_prefix("consent amended: ")
            .and_then(|r| r.split_once(" (revision "))
        {
            return html! { (t("عُدّلت الموافقة ", "Consent amended: ")) code { (c) } " (" (t("المراجعة ", "revision ")) (self.number_text(rev.trim_end_matches(')'))) ")" };
        }
        if let Some(k) = change.strip_prefix("merged into ") {
            return html! { (t("دُمجت في الحالة ", "Merged into case ")) code { (k) } };
        }
        if let Some(m) = change
            .strip_prefix("merged: ")
            .and_then(|r| r.strip_suffix(" folded into this case"))
        {
            return html! { (t("دُمجت فيها الحالة ", "Case merged into this one: ")) code { (m) } };
        }
        if let Some(m) = self.break_glass(change) {
            return m;
        }
        if let Some(m) = self.service_referral(change) {
            return m;
        }
        if let Some((r, rest)) = change
            .strip_prefix("delivery of ")
            .and_then(|r| r.split_once(": "))
        {
            let (outcome, reason) = match rest.split_once(" (") {
                Some((o, why)) => (o, Some(why.trim_end_matches(')'))),
                None => (rest, None),
            };
            return html! {
                (t("تسليم ", "Delivery of ")) code { (r) } ": " (l(outcome))
                @if let Some(why) = reason { " (" (l(why)) ")" }
            };
        }
        for (prefix, ar, en) in [
            ("withdrawal notice ", "إشعار سحب ", "Withdrawal notice "),
            ("feedback ", "إفادة إلى المُحيل ", "Feedback "),
        ] {
            if let Some((id, rest)) = change
                .strip_prefix(prefix)
                .and_then(|r| r.split_once(" to "))
            {
                if let Some((agency, outcome)) = rest.split_once(": ") {
                    return html! { (pick(lang, ar, en)) code { (id) } " → " (self.agency(agency)) ": " (l(outcome)) };
                }
            }
        }
        html! { bdi { (change) } }
    }

    /// "break-glass bkg_… by <agency> (<reason>), until <time>".
    fn break_glass(&self, change: &str) -> Option<Markup> {
        let lang = self.lang;
        let rest = change.strip_prefix("break-glass ")?;
        let (id, rest) = rest.split_once(" by ")?;
        let (agency, rest) = rest.split_once(" (")?;
        let (reason, until) = rest.split_once("), until ")?;
        Some(html! {
            (pick(lang, "وصول طارئ ", "Break-glass access ")) code { (id) } " — " (self.agency(agency))
            " (" (label(reason, lang)) ")" (pick(lang, "، حتى ", ", until ")) (at(&self.l, &rfc3339(until)))
        })
    }

    /// "service referral srv_… (<service> for <action>, to <agency>): <state> by
    /// <agency>[; medical costs covered: <coverage>]".
    fn service_referral(&self, change: &str) -> Option<Markup> {
        let lang = self.lang;
        let rest = change.strip_prefix("service referral ")?;
        let (id, rest) = rest.split_once(" (")?;
        let (service, rest) = rest.split_once(" for ")?;
        let (action, rest) = rest.split_once(", to ")?;
        let (to, rest) = rest.split_once("): ")?;
        let (rest, coverage) = match rest.split_once("; medical costs covered: ") {
            Some((r, c)) => (r, Some(c)),
            None => (rest, None),
        };
        let (state, by) = rest.split_once(" by ")?;
        Some(html! {
            (pick(lang, "إحالة خدمة ", "Service referral ")) code { (id) }
            " (" (label(service, lang)) (pick(lang, "، الإجراء ", ", action ")) code { (action) } " → " (self.agency(to)) "): "
            (label(state, lang)) " — " (self.agency(by))
            @if let Some(c) = coverage { (pick(lang, "؛ التكاليف الطبية: ", "; medical costs: ")) (lifecycle::coverage_text(c, lang)) }
        })
    }
}

/// A time the hub wrote into a history line as chrono prints one in UTC
/// ("2026-12-03 12:05:00.123 UTC"), as RFC 3339; anything else as it came.
fn rfc3339(t: &str) -> String {
    t.strip_suffix(" UTC")
        .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f").ok())
        .map(|t| t.and_utc().to_rfc3339())
        .unwrap_or_else(|| t.to_owned())
}

fn refused(lang: Lang, s: &Session, status: &tonic::Status) -> Response {
    let code = match status.code() {
        tonic::Code::PermissionDenied | tonic::Code::NotFound => StatusCode::FORBIDDEN,
        tonic::Code::InvalidArgument => StatusCode::BAD_REQUEST,
        _ => StatusCode::BAD_GATEWAY,
    };
    html_page(
        code,
        pages::problem(
            lang,
            Some(s),
            status.message(),
            pick(
                lang,
                "ارجع إلى قائمة الحالات.",
                "Go back to the list of cases.",
            ),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_written_into_a_history_line_reads_as_rfc_3339() {
        assert_eq!(
            rfc3339("2026-12-03 12:05:00.123456 UTC"),
            "2026-12-03T12:05:00.123456+00:00"
        );
        assert_eq!(
            rfc3339("2026-12-03 12:05:00 UTC"),
            "2026-12-03T12:05:00+00:00"
        );
        assert_eq!(rfc3339("tomorrow"), "tomorrow");
    }
}
