//! What a caseworker or a supervisor does to a case from its page: assign it (a
//! supervisor), record a review, close it with one of the five reasons. Each is a form
//! carrying the version it was made against: a case changed since is said plainly, with
//! a way to reload, never a raw ABORTED.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use himaya_record::lifecycle::ClosureReason;
use maud::{html, Markup};

use crate::people::Role;
use crate::referral::Form;
use crate::session::Session;
use crate::text::{lang_of, pick};
use crate::{csrf_refused, html_page, hub, pages, signed_in, App};

/// The action forms of a case page, for this person, at `version`.
pub fn forms(lang: Lang, s: &Session, case_id: &str, version: i64) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    let hidden = html! {
        input type="hidden" name="csrf" value=(s.csrf);
        input type="hidden" name="version" value=(version);
    };
    html! {
        @if s.person.has(Role::Supervisor) {
            form method="post" action={"/cases/" (case_id) "/assign"} {
                h2 { (t("إسناد الحالة", "Assign the case")) }
                (hidden)
                label for="caseworker" { (t("أخصائي الحالة (مرجعه)", "Caseworker (their reference)")) }
                input #caseworker name="caseworker" maxlength="64" dir="ltr" required;
                button type="submit" { (t("إسناد", "Assign")) }
            }
        }
        @if s.person.has(Role::Caseworker) {
            form method="post" action={"/cases/" (case_id) "/review"} {
                h2 { (t("تسجيل مراجعة", "Record a review")) }
                (hidden)
                label for="kind" { (t("نوع المراجعة", "Kind")) }
                select #kind name="kind" {
                    option value="home_visit" { (t("زيارة منزلية", "Home visit")) }
                    option value="meeting_with_child" { (t("لقاء مع الطفل", "Meeting with the child")) }
                    option value="phone" { (t("مكالمة هاتفية", "Phone call")) }
                }
                label.check { input type="checkbox" name="child_seen" value="yes"; " " (t("رأيت الطفل مباشرة", "I saw the child directly")) }
                label for="findings" { (t("ما وجدته", "Findings")) }
                textarea #findings name="findings" maxlength="4000" dir="auto" required {}
                button type="submit" { (t("حفظ المراجعة", "Save the review")) }
            }
            form method="post" action={"/cases/" (case_id) "/close"} {
                h2 { (t("إغلاق الحالة", "Close the case")) }
                (hidden)
                label for="reason" { (t("سبب الإغلاق", "Reason")) }
                select #reason name="reason" {
                    @for r in ClosureReason::ALL {
                        option value=(r.as_str()) { (closure_label(*r, lang)) }
                    }
                }
                label.check { input type="checkbox" name="parents_consulted" value="yes"; " " (t("استُشير الوالدان", "The parents were consulted")) }
                label for="final_evaluation" { (t("التقييم النهائي", "Final evaluation")) }
                textarea #final_evaluation name="final_evaluation" maxlength="4000" dir="auto" required {}
                label for="recommendations" { (t("توصيات لاستمرار الدعم", "Recommendations for continued support")) }
                textarea #recommendations name="recommendations" maxlength="4000" dir="auto" required {}
                button type="submit" { (t("إغلاق", "Close")) }
            }
        }
    }
}

fn closure_label(r: ClosureReason, lang: Lang) -> &'static str {
    match r {
        ClosureReason::NeedEnded => pick(
            lang,
            "انتهت الحاجة إلى إدارة الحالة",
            "The need for case management ended",
        ),
        ClosureReason::Death => pick(lang, "وفاة الطفل", "The child died"),
        ClosureReason::TurnedEighteen => pick(lang, "بلغ الطفل 18 عامًا", "The child turned 18"),
        ClosureReason::MovedOutOfReach => pick(
            lang,
            "انتقل إلى منطقة خارج نطاق الفرق",
            "Moved out of the teams' reach",
        ),
        ClosureReason::ContactLost => pick(
            lang,
            "انقطع التواصل مع الطفل والأسرة",
            "Contact with child and family was lost",
        ),
    }
}

pub(crate) async fn assign(s: State<App>, h: HeaderMap, p: Path<String>, b: Bytes) -> Response {
    act(s, h, p, b, Action::Assign).await
}

pub(crate) async fn review(s: State<App>, h: HeaderMap, p: Path<String>, b: Bytes) -> Response {
    act(s, h, p, b, Action::Review).await
}

pub(crate) async fn close(s: State<App>, h: HeaderMap, p: Path<String>, b: Bytes) -> Response {
    act(s, h, p, b, Action::Close).await
}

#[derive(Clone, Copy)]
enum Action {
    Assign,
    Review,
    Close,
}

async fn act(
    State(app): State<App>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
    body: Bytes,
    action: Action,
) -> Response {
    let lang = lang_of(&headers);
    let roles: &[Role] = match action {
        Action::Assign => &[Role::Supervisor],
        Action::Review | Action::Close => &[Role::Caseworker],
    };
    let s = match signed_in(&app, &headers, roles).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let f = Form::parse(&body);
    if let Some(r) = csrf_refused(lang, &s, &f) {
        return r;
    }
    // The id goes back into a Location header: only a well-formed case id may.
    let Ok(case_id) = himaya_record::CaseId::parse(&case_id).map(|c| c.to_string()) else {
        return html_page(
            StatusCode::NOT_FOUND,
            pages::problem(
                lang,
                Some(&s),
                pick(
                    lang,
                    "لا توجد حالة بهذا الرقم.",
                    "There is no case with this id.",
                ),
                pick(
                    lang,
                    "افتح الحالة من قائمة الحالات.",
                    "Open the case from the list of cases.",
                ),
            ),
        );
    };
    let version = f.get("version").parse::<i64>().unwrap_or(0);
    let actor = s.person.login.clone();
    let mut work = pb::case_work_client::CaseWorkClient::new(app.hub.channel());
    let (p, id) = (&s.person, case_id.clone());
    let answer = match action {
        Action::Assign => {
            let msg = pb::AssignCaseRequest {
                case_id: id,
                expected_version: version,
                actor,
                caseworker_id: f.get("caseworker").to_owned(),
            };
            match hub::request(p, lang, msg) {
                Ok(r) => work.assign_case(r).await,
                Err(e) => return crate::failed(lang, Some(&s), e),
            }
        }
        Action::Review => {
            let msg = pb::RecordReviewRequest {
                case_id: id,
                expected_version: version,
                actor,
                kind: f.get("kind").to_owned(),
                child_seen: f.get("child_seen") == "yes",
                findings: f.get("findings").to_owned(),
            };
            match hub::request(p, lang, msg) {
                Ok(r) => work.record_review(r).await,
                Err(e) => return crate::failed(lang, Some(&s), e),
            }
        }
        Action::Close => {
            let msg = pb::CloseCaseRequest {
                case_id: id,
                expected_version: version,
                actor,
                reason: f.get("reason").to_owned(),
                parents_consulted: Some(f.get("parents_consulted") == "yes"),
                final_evaluation: f.get("final_evaluation").to_owned(),
                recommendations: f.get("recommendations").to_owned(),
            };
            match hub::request(p, lang, msg) {
                Ok(r) => work.close_case(r).await,
                Err(e) => return crate::failed(lang, Some(&s), e),
            }
        }
    };
    match answer {
        Ok(_) => Redirect::to(&format!("/cases/{case_id}")).into_response(),
        Err(status) => refused(lang, &s, &case_id, &status),
    }
}

/// A refused action, said in the page's language with what to do next.
fn refused(lang: Lang, s: &Session, case_id: &str, status: &tonic::Status) -> Response {
    let (code, what) = match status.code() {
        tonic::Code::Aborted => (
            StatusCode::CONFLICT,
            pick(
                lang,
                "تغيّرت الحالة منذ أن فتحتها (غيّرها شخص آخر).",
                "The case changed since you opened it (someone else changed it).",
            )
            .to_owned(),
        ),
        _ => (
            StatusCode::UNPROCESSABLE_ENTITY,
            status.message().to_owned(),
        ),
    };
    let body = html! {
        h1 { (pick(lang, "لم يُحفظ التغيير", "The change was not saved")) }
        p.error role="alert" { (what) }
        p { a href={"/cases/" (case_id)} { (pick(lang, "أعد تحميل الحالة وحاول مجددًا", "Reload the case and try again")) } }
    };
    html_page(
        code,
        pages::page(lang, pick(lang, "الحالة", "Case"), Some(s), body),
    )
}
