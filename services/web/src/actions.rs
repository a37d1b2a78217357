//! What a caseworker or a supervisor does to a case from its page: decide acceptance,
//! assign (a supervisor), assess, set the plan, refer or complete a plan action, review,
//! close with one of the five reasons, reopen. Each is a form carrying the version it was
//! made against: a case changed since is said plainly, with a way to reload, never a raw
//! ABORTED. A form the hub refuses comes back filled in, each problem next to its field
//! in the page's language; a move that went through goes back to the case page, which
//! confirms it.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use himaya_proto::convert::{wire, WireEnum};
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use himaya_record::lifecycle::{AcceptanceDecision, ClosureReason, NeedDomain, ReviewKind};
use himaya_record::service_referral::AbilityToPay;
use himaya_record::{ServiceType, TargetGroup};
use maud::html;
use tonic_types::StatusExt;

use crate::lifecycle::{lines, Attempt, Move, ACTION_SLOTS, GOAL_SLOTS};
use crate::referral::Form;
use crate::session::Session;
use crate::text::{lang_of, pick};
use crate::{csrf_refused, html_page, hub, pages, signed_in, App, WebError};

pub(crate) async fn decide(s: State<App>, h: HeaderMap, p: Path<String>, b: Bytes) -> Response {
    act(s, h, p, b, Move::Decide).await
}

pub(crate) async fn assign(s: State<App>, h: HeaderMap, p: Path<String>, b: Bytes) -> Response {
    act(s, h, p, b, Move::Assign).await
}

pub(crate) async fn assess(s: State<App>, h: HeaderMap, p: Path<String>, b: Bytes) -> Response {
    act(s, h, p, b, Move::Assess).await
}

pub(crate) async fn plan(s: State<App>, h: HeaderMap, p: Path<String>, b: Bytes) -> Response {
    act(s, h, p, b, Move::Plan).await
}

pub(crate) async fn refer(s: State<App>, h: HeaderMap, p: Path<String>, b: Bytes) -> Response {
    act(s, h, p, b, Move::Refer).await
}

pub(crate) async fn complete(s: State<App>, h: HeaderMap, p: Path<String>, b: Bytes) -> Response {
    act(s, h, p, b, Move::Complete).await
}

pub(crate) async fn review(s: State<App>, h: HeaderMap, p: Path<String>, b: Bytes) -> Response {
    act(s, h, p, b, Move::Review).await
}

pub(crate) async fn close(s: State<App>, h: HeaderMap, p: Path<String>, b: Bytes) -> Response {
    act(s, h, p, b, Move::Close).await
}

pub(crate) async fn reopen(s: State<App>, h: HeaderMap, p: Path<String>, b: Bytes) -> Response {
    act(s, h, p, b, Move::Reopen).await
}

/// Where the hub's field paths land in a form whose rows were left out when empty: the
/// plan's goals and actions, the assessment's needs, as sent (index) → as shown (slot).
#[derive(Default)]
struct Slots {
    needs: Vec<NeedDomain>,
    goals: Vec<(usize, Vec<usize>)>,
}

/// A plan action's id as SetPlan numbers them (`a1`, `a2`, …): the only kind of value
/// that may go into the page's element ids.
fn action_id(raw: &str) -> Option<&str> {
    let digits = raw.strip_prefix('a')?;
    (!digits.is_empty() && digits.len() <= 4 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some(raw)
}

async fn act(
    State(app): State<App>,
    headers: HeaderMap,
    Path(case_id): Path<String>,
    body: Bytes,
    what: Move,
) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, what.roles()).await {
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
    let action = match what {
        Move::Refer | Move::Complete => action_id(f.get("action_id")).unwrap_or("").to_owned(),
        _ => String::new(),
    };
    let mut slots = Slots::default();
    let answer = match send(&app, &s, lang, &case_id, what, &f, &mut slots).await {
        Ok(a) => a,
        Err(e) => return crate::failed(lang, Some(&s), e),
    };
    let status = match answer {
        Ok(done) => {
            tracing::info!(case_id = %case_id, what = what.path(), "case changed from the web");
            return Redirect::to(&format!("/cases/{case_id}?done={done}")).into_response();
        }
        Err(status) => status,
    };
    tracing::warn!(case_id = %case_id, what = what.path(), code = ?status.code(), "the hub refused a case change");
    let form_id = what.form_id(&action);
    let errors: Vec<(String, String)> = match status.code() {
        tonic::Code::InvalidArgument => {
            let found = field_errors(&status, what, &action, &slots, &form_id);
            if found.is_empty() {
                vec![(form_id, status.message().to_owned())]
            } else {
                found
            }
        }
        // The caseload cap (and "not a caseworker of this agency") is about the field.
        tonic::Code::FailedPrecondition if what == Move::Assign => {
            let said = status.message().to_owned();
            vec![("caseworker".into(), with_names(&app, &s, lang, said).await)]
        }
        tonic::Code::FailedPrecondition | tonic::Code::OutOfRange => {
            vec![(form_id, status.message().to_owned())]
        }
        // A plan action that is not (or no longer) in the plan.
        tonic::Code::NotFound if matches!(what, Move::Refer | Move::Complete) => {
            vec![(form_id, status.message().to_owned())]
        }
        _ => return refused(lang, &s, &case_id, &status),
    };
    let attempt = Attempt {
        what,
        action,
        form: f,
        errors,
    };
    let mut page = crate::casework::render(&app, &s, lang, &case_id, Some(&attempt), None).await;
    if page.status() == StatusCode::OK {
        *page.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    page
}

type Answer = Result<&'static str, tonic::Status>;

/// Makes the move in the hub: the confirmation's code, or the hub's refusal.
async fn send(
    app: &App,
    s: &Session,
    lang: Lang,
    case_id: &str,
    what: Move,
    f: &Form,
    slots: &mut Slots,
) -> Result<Answer, WebError> {
    let version = f.get("version").parse::<i64>().unwrap_or(0);
    // The hub records the proven person whatever is sent; the person is the staff id.
    let actor = s.person.person_id.clone();
    let p = &s.person;
    let id = case_id.to_owned();
    let mut work = pb::case_work_client::CaseWorkClient::new(app.hub.channel());
    let all = |name: &str| -> Vec<String> {
        f.0.iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect()
    };
    let opt = |name: &str| Some(f.get(name).to_owned()).filter(|v| !v.is_empty());
    Ok(match what {
        Move::Decide => {
            let msg = pb::DecideAcceptanceRequest {
                case_id: id,
                expected_version: version,
                actor,
                // A value outside a vocabulary goes as UNSPECIFIED: the hub refuses it,
                // naming the field and the choices, shown next to the field.
                decision: wire::<AcceptanceDecision>(f.get("decision")),
                vulnerability_criteria: all("criteria"),
                reason: opt("decide_reason"),
                referred_on_to: opt("referred_on_to"),
                target_groups: all("target_groups")
                    .iter()
                    .map(|g| wire::<TargetGroup>(g))
                    .collect(),
            };
            work.decide_acceptance(hub::request(p, lang, msg)?)
                .await
                .map(|r| {
                    let c = r.into_inner();
                    // Material need alone: the hub referred the family to relief instead.
                    match (c.status(), &c.note) {
                        (pb::CaseStatus::ReferredOn, Some(_))
                            if f.get("decision") == "register" =>
                        {
                            "relief"
                        }
                        _ => "decide",
                    }
                })
        }
        Move::Assign => {
            let msg = pb::AssignCaseRequest {
                case_id: id,
                expected_version: version,
                actor,
                caseworker_id: f.get("caseworker").to_owned(),
            };
            work.assign_case(hub::request(p, lang, msg)?)
                .await
                .map(|_| what.path())
        }
        Move::Assess => {
            let mut needs = Vec::new();
            for d in NeedDomain::ALL {
                let text = f.get(&format!("need_{}", d.as_str()));
                if !text.is_empty() {
                    slots.needs.push(*d);
                    needs.push(pb::NeedInput {
                        domain: d.to_wire(),
                        description: text.to_owned(),
                    });
                }
            }
            let msg = pb::RecordAssessmentRequest {
                case_id: id,
                expected_version: version,
                actor,
                risk_factors: lines(f.get("risk_factors")),
                protective_factors: lines(f.get("protective_factors")),
                needs,
            };
            work.record_assessment(hub::request(p, lang, msg)?)
                .await
                .map(|_| what.path())
        }
        Move::Plan => {
            let mut goals = Vec::new();
            for gi in 0..GOAL_SLOTS {
                let mut actions = Vec::new();
                let mut used = Vec::new();
                for ai in 0..ACTION_SLOTS {
                    let v = |k: &str| f.get(&format!("g{gi}_a{ai}_{k}")).to_owned();
                    let a = pb::ActionInput {
                        description: v("desc"),
                        responsible_agency: v("agency"),
                        service_type: wire::<ServiceType>(&v("service")),
                        due_on: v("due"),
                    };
                    let empty = a.description.is_empty()
                        && a.responsible_agency.is_empty()
                        && v("service").is_empty()
                        && a.due_on.is_empty();
                    if !empty {
                        used.push(ai);
                        actions.push(a);
                    }
                }
                let description = f.get(&format!("g{gi}_desc")).to_owned();
                if description.is_empty() && actions.is_empty() {
                    continue;
                }
                slots.goals.push((gi, used));
                goals.push(pb::GoalInput {
                    description,
                    actions,
                });
            }
            let msg = pb::SetPlanRequest {
                case_id: id,
                expected_version: version,
                actor,
                goals,
            };
            work.set_plan(hub::request(p, lang, msg)?)
                .await
                .map(|_| what.path())
        }
        Move::Refer => {
            let msg = pb::CreateServiceReferralRequest {
                case_id: id,
                action_id: f.get("action_id").to_owned(),
                actor,
                ability_to_pay: wire::<AbilityToPay>(f.get("ability_to_pay")),
            };
            pb::service_referrals_client::ServiceReferralsClient::new(app.hub.channel())
                .create_service_referral(hub::request(p, lang, msg)?)
                .await
                .map(|r| match r.into_inner().warnings.is_empty() {
                    true => "refer",
                    false => "held",
                })
        }
        Move::Complete => {
            let msg = pb::CompleteActionRequest {
                case_id: id,
                expected_version: version,
                actor,
                action_id: f.get("action_id").to_owned(),
            };
            work.complete_action(hub::request(p, lang, msg)?)
                .await
                .map(|_| what.path())
        }
        Move::Review => {
            let msg = pb::RecordReviewRequest {
                case_id: id,
                expected_version: version,
                actor,
                kind: wire::<ReviewKind>(f.get("kind")),
                child_seen: f.get("child_seen") == "yes",
                findings: f.get("findings").to_owned(),
            };
            work.record_review(hub::request(p, lang, msg)?)
                .await
                .map(|_| what.path())
        }
        Move::Close => {
            let msg = pb::CloseCaseRequest {
                case_id: id,
                expected_version: version,
                actor,
                reason: wire::<ClosureReason>(f.get("reason")),
                parents_consulted: Some(f.get("parents_consulted") == "yes"),
                final_evaluation: f.get("final_evaluation").to_owned(),
                recommendations: f.get("recommendations").to_owned(),
            };
            work.close_case(hub::request(p, lang, msg)?)
                .await
                .map(|_| what.path())
        }
        Move::Reopen => {
            let msg = pb::ReopenCaseRequest {
                case_id: id,
                expected_version: version,
                actor,
                reason: f.get("reopen_reason").to_owned(),
            };
            work.reopen_case(hub::request(p, lang, msg)?)
                .await
                .map(|_| what.path())
        }
    })
}

/// A refusal naming caseworkers by their staff id (their person id): each followed by
/// their name, isolated, so the supervisor sees who has room.
pub(crate) async fn with_names(app: &App, s: &Session, lang: Lang, said: String) -> String {
    let ids: Vec<String> = said
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| w.starts_with("psn_"))
        .map(str::to_owned)
        .collect();
    if ids.is_empty() {
        return said;
    }
    let names = crate::casework::names(app, Some(&s.person.agency_id), &ids, lang).await;
    let mut out = said;
    for (id, name) in &names {
        out = out.replace(
            id.as_str(),
            &format!("\u{2068}{name}\u{2069} (\u{2068}{id}\u{2069})"),
        );
    }
    out
}

/// The hub's field violations, each by the id of the element it belongs next to.
fn field_errors(
    status: &tonic::Status,
    what: Move,
    action: &str,
    slots: &Slots,
    form_id: &str,
) -> Vec<(String, String)> {
    let Some(bad) = status.get_details_bad_request() else {
        return Vec::new();
    };
    bad.field_violations
        .into_iter()
        .map(|v| {
            let text = v
                .description
                .split_once("] ")
                .map(|(_, t)| t.to_owned())
                .unwrap_or(v.description);
            let input =
                input_of(&v.field, what, action, slots).unwrap_or_else(|| form_id.to_owned());
            (input, text)
        })
        .collect()
}

/// `name[i]…` → (i, what follows `]`).
fn indexed<'a>(path: &'a str, name: &str) -> Option<(usize, &'a str)> {
    let rest = path.strip_prefix(name)?.strip_prefix('[')?;
    let (i, after) = rest.split_once(']')?;
    Some((i.parse().ok()?, after))
}

/// Which element of the form a violation's field path names (`None`: the whole form).
fn input_of(path: &str, what: Move, action: &str, slots: &Slots) -> Option<String> {
    let is = |name: &str| path == name || path.starts_with(&format!("{name}["));
    let id = |s: &str| Some(s.to_owned());
    match what {
        Move::Decide if is("decision") => id("decision"),
        Move::Decide if is("vulnerability_criteria") => id("criteria"),
        Move::Decide if is("target_groups") => id("target_groups"),
        Move::Decide if is("reason") => id("decide_reason"),
        Move::Decide if is("referred_on_to") => id("referred_on_to"),
        Move::Assign if is("caseworker_id") => id("caseworker"),
        Move::Assess if is("risk_factors") => id("risk_factors"),
        Move::Assess if is("protective_factors") => id("protective_factors"),
        Move::Assess if path == "needs" => id("needs"),
        Move::Assess => {
            let (i, _) = indexed(path, "needs")?;
            let d = slots.needs.get(i)?;
            Some(format!("need_{}", d.as_str()))
        }
        Move::Plan if path == "goals" => id("g0_desc"),
        Move::Plan => {
            let (gi, rest) = indexed(path, "goals")?;
            let (g, used) = slots.goals.get(gi)?;
            if rest == ".description" {
                return Some(format!("g{g}_desc"));
            }
            let rest = rest.strip_prefix('.')?;
            if rest == "actions" {
                return Some(format!("g{g}_a0_desc"));
            }
            let (ai, field) = indexed(rest, "actions")?;
            let a = used.get(ai)?;
            let field = match field {
                ".description" => "desc",
                ".responsible_agency" => "agency",
                ".service_type" => "service",
                ".due_on" => "due",
                _ => return Some(format!("g{g}_a{a}_desc")),
            };
            Some(format!("g{g}_a{a}_{field}"))
        }
        Move::Refer if is("ability_to_pay") && !action.is_empty() => {
            Some(format!("ability_to_pay-{action}"))
        }
        Move::Review if is("kind") => id("kind"),
        Move::Review if is("findings") => id("findings"),
        Move::Close if is("reason") => id("reason"),
        Move::Close if is("parents_consulted") => id("parents_consulted"),
        Move::Close if is("final_evaluation") => id("final_evaluation"),
        Move::Close if is("recommendations") => id("recommendations"),
        Move::Reopen if is("reason") => id("reopen_reason"),
        _ => None,
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
        tonic::Code::PermissionDenied => (StatusCode::FORBIDDEN, status.message().to_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_paths_land_on_the_rows_shown() {
        let slots = Slots {
            needs: vec![NeedDomain::Health, NeedDomain::Legal],
            // Goal 0 was left empty: the first sent is the form's second, whose actions
            // sent are its rows 0 and 2.
            goals: vec![(1, vec![0, 2])],
        };
        let plan = |p: &str| input_of(p, Move::Plan, "", &slots);
        assert_eq!(
            plan("goals[0].actions[1].due_on").as_deref(),
            Some("g1_a2_due")
        );
        assert_eq!(plan("goals[0].description").as_deref(), Some("g1_desc"));
        assert_eq!(plan("goals[0].actions").as_deref(), Some("g1_a0_desc"));
        assert_eq!(plan("goals").as_deref(), Some("g0_desc"));
        assert_eq!(plan("actor"), None);
        assert_eq!(
            input_of("needs[1].description", Move::Assess, "", &slots).as_deref(),
            Some("need_legal")
        );
        assert_eq!(
            input_of("ability_to_pay", Move::Refer, "a2", &slots).as_deref(),
            Some("ability_to_pay-a2")
        );
        assert_eq!(
            input_of("vulnerability_criteria[3]", Move::Decide, "", &slots).as_deref(),
            Some("criteria")
        );
    }

    #[test]
    fn action_ids_are_checked() {
        assert_eq!(action_id("a12"), Some("a12"));
        assert_eq!(action_id("a1\"><script>"), None);
        assert_eq!(action_id("b1"), None);
    }
}
