//! A partner agency's staff answer the service referrals addressed to their agency:
//! accept, reject with a reason, report progress, complete or fail. Each answer carries
//! the version it was made against; the hub checks the move is allowed.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use himaya_proto::convert::{code, wire};
use himaya_proto::v1 as pb;
use himaya_record::service_referral::{MedicalCoverage, TaskState};
use himaya_record::ServiceType;
use maud::html;

use crate::people::Role;
use crate::text::{label, lang_of, pick, Local};
use crate::{failed, html_page, hub, pages, posted, signed_in, App};

/// The answers a receiving agency gives, in order.
const ANSWERS: &[(&str, &str, &str)] = &[
    ("accepted", "قبول", "Accept"),
    ("rejected", "رفض (مع السبب)", "Reject (with the reason)"),
    (
        "in_progress",
        "بدء أو متابعة التنفيذ",
        "Started, or progress",
    ),
    ("completed", "اكتملت", "Completed"),
    (
        "failed",
        "تعذر التنفيذ (مع السبب)",
        "Failed (with the reason)",
    ),
];

pub(crate) async fn incoming(State(app): State<App>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, &[Role::AgencyStaff]).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let list = match hub::request(&s.person, lang, pb::ListServiceReferralsRequest::default()) {
        Ok(r) => {
            pb::service_referrals_client::ServiceReferralsClient::new(app.hub.channel())
                .list_service_referrals(r)
                .await
        }
        Err(e) => return failed(lang, Some(&s), e),
    };
    let referrals = match list {
        Ok(l) => l.into_inner().referrals,
        Err(status) => return crate::hub_unavailable(lang, &s, &status),
    };
    let t = |ar, en| pick(lang, ar, en);
    let l = Local::new(lang, &app.settings.web);
    let mine: Vec<&pb::ServiceReferral> = referrals
        .iter()
        .filter(|r| r.to_agency == s.person.agency_id)
        .collect();
    let body = html! {
        h1 { (t("الإحالات الواردة إلى جهتك", "Service referrals to your agency")) }
        @if mine.is_empty() { p { (t("لا توجد إحالات.", "No referrals.")) } }
        @for r in mine {
            section.referral {
                h2 { code { (r.service_referral_id) } " · " (label(code::<ServiceType>(r.service_type), lang)) " · " (code::<TaskState>(r.state)) }
                @if !r.answer_due_at.is_empty() { p { (t("موعد الرد: ", "Answer due: ")) (crate::casework::at(&l, &r.answer_due_at)) } }
                @if r.medical_coverage != 0 { p { (t("تغطية التكاليف الطبية: ", "Medical costs covered: ")) (code::<MedicalCoverage>(r.medical_coverage)) } }
                form method="post" action="/service-referrals" {
                    input type="hidden" name="csrf" value=(s.csrf);
                    input type="hidden" name="id" value=(r.service_referral_id);
                    input type="hidden" name="version" value=(r.version);
                    label for={"state-" (r.service_referral_id)} { (t("الرد", "Answer")) }
                    select id={"state-" (r.service_referral_id)} name="state" {
                        @for (code, ar, en) in ANSWERS { option value=(code) { (pick(lang, ar, en)) } }
                    }
                    label for={"reason-" (r.service_referral_id)} { (t("السبب أو الملاحظة", "Reason or note")) }
                    input id={"reason-" (r.service_referral_id)} name="reason" maxlength="1000" dir="auto";
                    button type="submit" { (t("إرسال الرد", "Send the answer")) }
                }
            }
        }
    };
    html_page(
        StatusCode::OK,
        pages::page(
            lang,
            t("الإحالات الواردة", "Incoming referrals"),
            Some(&s),
            body,
        ),
    )
}

pub(crate) async fn answer(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let lang = lang_of(&headers);
    let (s, f) = match posted(&app, &headers, &body, &[Role::AgencyStaff]).await {
        Ok(posted) => posted,
        Err(r) => return r,
    };
    let msg = pb::UpdateServiceReferralRequest {
        service_referral_id: f.get("id").to_owned(),
        expected_version: f.get("version").parse().unwrap_or(0),
        state: wire::<TaskState>(f.get("state")),
        reason: Some(f.get("reason").to_owned()).filter(|r| !r.is_empty()),
        actor: s.person.login.clone(),
    };
    let answered = match hub::request(&s.person, lang, msg) {
        Ok(r) => {
            pb::service_referrals_client::ServiceReferralsClient::new(app.hub.channel())
                .update_service_referral(r)
                .await
        }
        Err(e) => return failed(lang, Some(&s), e),
    };
    match answered {
        Ok(_) => Redirect::to("/service-referrals").into_response(),
        Err(status) => {
            let what = match status.code() {
                tonic::Code::Aborted => pick(
                    lang,
                    "تغيّرت الإحالة منذ أن فتحتها.",
                    "The referral changed since you opened it.",
                )
                .to_owned(),
                _ => status.message().to_owned(),
            };
            html_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::problem(
                    lang,
                    Some(&s),
                    &what,
                    pick(
                        lang,
                        "أعد فتح قائمة الإحالات وحاول مجددًا.",
                        "Open the list of referrals again and retry.",
                    ),
                ),
            )
        }
    }
}
