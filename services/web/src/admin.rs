//! An agency's administrator keeps its accounts: who may sign in, with which roles; a new
//! account's password is made here and shown once. Administrators see and change only
//! their own agency's people. A caseworker's or supervisor's account is also their staff
//! record in the case-owning ministry, registered through the hub under the person's id
//! (one list of people); if the hub refuses it, the account is taken back. Every change is
//! a row of `account_events` (ids only).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use himaya_record::validate::check_text;
use himaya_record::{AgencyType, Problem, Violations};
use maud::{html, Markup};

use crate::people::{self, Role};
use crate::referral::Form;
use crate::session::{self, Session};
use crate::text::{label, lang_of, pick};
use crate::{failed, html_page, hub, pages, posted, signed_in, App, WebError};

/// The most accounts one page lists.
const MAX_LISTED: i64 = 500;

/// One account as the list shows it.
#[derive(sqlx::FromRow)]
struct Account {
    person_id: String,
    login: String,
    name_ar: String,
    name_latin: Option<String>,
    roles: Vec<String>,
    disabled: bool,
    locked: bool,
}

async fn accounts(app: &App, agency_id: &str) -> Result<Vec<Account>, WebError> {
    Ok(sqlx::query_as::<_, Account>(
        "SELECT person_id, login, name_ar, name_latin, roles, disabled,
                coalesce(locked_until > now(), false) AS locked
           FROM persons WHERE agency_id = $1 ORDER BY login LIMIT $2",
    )
    .bind(agency_id)
    .bind(MAX_LISTED)
    .fetch_all(&app.pool)
    .await?)
}

/// The roles an agency of this type may give: casework only in the case-owning ministry,
/// the console only on the emergency line, referral forms in schools and community
/// committees.
fn roles_for(t: AgencyType) -> Vec<Role> {
    Role::ALL
        .iter()
        .copied()
        .filter(|r| match r {
            Role::Caseworker | Role::Supervisor => t == AgencyType::SocialAffairs,
            Role::HotlineOperator => t == AgencyType::EmergencyLine,
            Role::SchoolOfficer => t == AgencyType::School,
            Role::CommitteeMember => t == AgencyType::Community,
            Role::AgencyStaff | Role::Auditor | Role::Admin => true,
        })
        .collect()
}

fn agency_type(app: &App, s: &Session) -> Option<AgencyType> {
    app.settings
        .agencies
        .get(&s.person.agency_id)
        .map(|a| a.agency_type)
}

/// What the form said last time, kept to show it again with its errors.
#[derive(Default)]
struct Filled {
    login: String,
    name_ar: String,
    name_latin: String,
    roles: Vec<String>,
    supervisor: String,
}

pub(crate) async fn people_page(State(app): State<App>, headers: HeaderMap) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, &[Role::Admin]).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    render(&app, lang, &s, &Filled::default(), &Violations::new(), None).await
}

async fn render(
    app: &App,
    lang: Lang,
    s: &Session,
    filled: &Filled,
    v: &Violations,
    created: Option<Markup>,
) -> Response {
    let list = match accounts(app, &s.person.agency_id).await {
        Ok(l) => l,
        Err(e) => return failed(lang, Some(s), e),
    };
    let t = |ar, en| pick(lang, ar, en);
    let allowed = agency_type(app, s).map(roles_for).unwrap_or_default();
    let supervisors: Vec<&Account> = list
        .iter()
        .filter(|a| !a.disabled && a.roles.iter().any(|r| r == "supervisor"))
        .collect();
    let error = |field: &str| -> Option<String> {
        v.iter()
            .find(|f| f.field == field)
            .map(|f| f.problem.text(lang))
    };
    let status = if v.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let body = html! {
        h1 { (t("حسابات جهتك", "Your agency's accounts")) }
        @if let Some(c) = created { (c) }
        @if !v.is_empty() {
            p.error role="alert" { (t("لم يُنشأ الحساب: صحّح الحقول المشار إليها.", "The account was not made: correct the fields marked.")) }
        }
        table {
            thead { tr {
                th scope="col" { (t("اسم المستخدم", "Login")) }
                th scope="col" { (t("الاسم", "Name")) }
                th scope="col" { (t("الأدوار", "Roles")) }
                th scope="col" { (t("الحالة", "State")) }
                th scope="col" { (t("إجراءات", "Actions")) }
            } }
            tbody {
                @for a in &list {
                    tr {
                        td { bdi dir="ltr" { (a.login) } }
                        td { bdi { (a.name_ar) } @if let Some(l) = &a.name_latin { " · " bdi { (l) } } }
                        td { @for r in &a.roles { span.role { (label(r, lang)) } " " } }
                        td {
                            @if a.disabled { (t("موقوف", "Disabled")) }
                            @else if a.locked { (t("مقفل مؤقتًا", "Locked for now")) }
                            @else { (t("نشط", "Active")) }
                        }
                        td {
                            @if a.person_id != s.person.person_id {
                                @for (what, ar, en, shown) in [
                                    ("disable", "إيقاف", "Disable", !a.disabled),
                                    ("enable", "تفعيل", "Enable", a.disabled),
                                    ("unlock", "فك القفل", "Unlock", a.locked),
                                    ("signout", "إنهاء جلساته", "End their sessions", !a.disabled),
                                ] {
                                    @if shown {
                                        form.inline method="post" action={"/admin/people/" (a.person_id) "/" (what)} {
                                            input type="hidden" name="csrf" value=(s.csrf);
                                            button.secondary type="submit" { (pick(lang, ar, en)) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { (t("حساب جديد", "A new account")) }
        p { (t("تُنشأ كلمة المرور هنا وتُعرض مرة واحدة؛ سلّمها لصاحبها. حساب الأخصائي أو المشرف هو سجله في الوزارة أيضًا.",
               "The password is made here and shown once: hand it over. A caseworker's or supervisor's account is also their staff record in the ministry.")) }
        form method="post" action="/admin/people" novalidate {
            input type="hidden" name="csrf" value=(s.csrf);
            (field(lang, "login", t("اسم المستخدم (حروف لاتينية صغيرة وأرقام و . _ -)", "Login (small Latin letters, digits, . _ -)"), &filled.login, "ltr", error("login")))
            (field(lang, "name_ar", t("الاسم كما هو (بالعربية)", "Name as given (Arabic script)"), &filled.name_ar, "auto", error("name_ar")))
            (field(lang, "name_latin", t("الاسم بحروف لاتينية (اختياري)", "Name in Latin letters (optional)"), &filled.name_latin, "ltr", error("name_latin")))
            fieldset aria-describedby=[error("roles").map(|_| "roles-error")] {
                legend { (t("الأدوار", "Roles")) }
                @for r in &allowed {
                    label.check {
                        input type="checkbox" name="roles" value=(r.as_str()) checked[filled.roles.iter().any(|x| x == r.as_str())];
                        " " (label(r.as_str(), lang))
                    }
                }
                @if let Some(e) = error("roles") { p.error #roles-error { (e) } }
            }
            @if allowed.contains(&Role::Caseworker) {
                label for="supervisor" { (t("مشرف الأخصائي (للأخصائيين)", "The caseworker's supervisor (for caseworkers)")) }
                select #supervisor name="supervisor" aria-describedby=[error("supervisor").map(|_| "supervisor-error")] {
                    option value="" { "—" }
                    @for sup in &supervisors {
                        option value=(sup.login) selected[filled.supervisor == sup.login] { (sup.name_ar) " (" (sup.login) ")" }
                    }
                }
                @if let Some(e) = error("supervisor") { p.error #supervisor-error { (e) } }
            }
            button type="submit" { (t("إنشاء الحساب", "Make the account")) }
        }
    };
    html_page(
        status,
        pages::page(lang, t("الحسابات", "Accounts"), Some(s), body),
    )
}

fn field(
    lang: Lang,
    name: &str,
    text: &str,
    value: &str,
    dir: &str,
    error: Option<String>,
) -> Markup {
    let id_error = format!("{name}-error");
    html! {
        label for=(name) { (text) }
        input id=(name) name=(name) value=(value) dir=(dir) maxlength="200"
            aria-invalid=[error.as_ref().map(|_| "true")]
            aria-describedby=[error.as_ref().map(|_| id_error.as_str())];
        @if let Some(e) = error {
            p.error id=(id_error) { (pick(lang, "خطأ: ", "Error: ")) (e) }
        }
    }
}

/// Checks the form against the person's agency; all problems at once.
fn check(f: &Form, allowed: &[Role]) -> (Filled, Vec<Role>, Violations) {
    let filled = Filled {
        login: f.get("login").to_owned(),
        name_ar: f.get("name_ar").to_owned(),
        name_latin: f.get("name_latin").to_owned(),
        roles: f.all("roles").map(str::to_owned).collect(),
        supervisor: f.get("supervisor").to_owned(),
    };
    let mut v = Violations::new();
    let login_ok = (3..=64).contains(&filled.login.len())
        && filled
            .login
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !login_ok {
        v.push(
            "login",
            Problem::InvalidCode {
                expected: "3-64 small Latin letters, digits, . _ or -",
            },
        );
    }
    if filled.name_ar.is_empty() {
        v.push("name_ar", Problem::Required);
    }
    check_text(&mut v, "name_ar", &filled.name_ar, 200);
    check_text(&mut v, "name_latin", &filled.name_latin, 200);
    let mut roles = Vec::new();
    for r in &filled.roles {
        match Role::parse(r).filter(|r| allowed.contains(r)) {
            Some(r) if !roles.contains(&r) => roles.push(r),
            Some(_) => {}
            None => {
                let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
                v.push(
                    "roles",
                    Problem::NotChosen {
                        choices: names.join(", "),
                    },
                );
            }
        }
    }
    if filled.roles.is_empty() {
        v.push("roles", Problem::AtLeastOne);
    }
    if roles.contains(&Role::Caseworker) && filled.supervisor.is_empty() {
        v.push("supervisor", Problem::Required);
    }
    (filled, roles, v)
}

pub(crate) async fn add_person(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let (s, f) = match posted(&app, &headers, &body, &[Role::Admin]).await {
        Ok(posted) => posted,
        Err(r) => return r,
    };
    let allowed = agency_type(&app, &s).map(roles_for).unwrap_or_default();
    let (filled, roles, mut v) = check(&f, &allowed);
    // The supervisor must be a supervisor of this agency.
    let mut supervisor_id = None;
    if v.is_empty() && roles.contains(&Role::Caseworker) {
        match people::by_login(&app.pool, &s.person.agency_id, &filled.supervisor).await {
            Ok(Some(p)) if p.has(Role::Supervisor) => supervisor_id = Some(p.person_id),
            Ok(_) => v.push(
                "supervisor",
                Problem::NotChosen {
                    choices: "a supervisor of your agency".into(),
                },
            ),
            Err(e) => return failed(lang, Some(&s), e),
        }
    }
    if !v.is_empty() {
        return render(&app, lang, &s, &filled, &v, None).await;
    }
    let password = people::generate_password();
    let names = (
        filled.name_ar.as_str(),
        Some(filled.name_latin.as_str()).filter(|n| !n.is_empty()),
    );
    let created = match people::add(
        &app.pool,
        &s.person.agency_id,
        &filled.login,
        names,
        &roles,
        &password,
    )
    .await
    {
        Ok(c) => c,
        Err(WebError::Store(himaya_store::StoreError::Database(sqlx::Error::Database(e))))
            if e.is_unique_violation() =>
        {
            let mut v = Violations::new();
            v.push(
                "login",
                Problem::Contradicts {
                    other: "an existing account (choose another login)".into(),
                },
            );
            return render(&app, lang, &s, &filled, &v, None).await;
        }
        Err(e) => return failed(lang, Some(&s), e),
    };
    let person_id = created.person.person_id.clone();
    let staff_role = if roles.contains(&Role::Supervisor) {
        Some(pb::StaffRole::Supervisor)
    } else if roles.contains(&Role::Caseworker) {
        Some(pb::StaffRole::Caseworker)
    } else {
        None
    };
    if let Some(role) = staff_role {
        let msg = pb::AddStaffRequest {
            staff_id: person_id.clone(),
            role: role.into(),
            supervisor_id: supervisor_id.filter(|_| role == pb::StaffRole::Caseworker),
        };
        let registered = match hub::request(&s.person, lang, msg) {
            Ok(r) => pb::staff_client::StaffClient::new(app.hub.channel())
                .add_staff(r)
                .await
                .map(|_| ()),
            Err(e) => return failed(lang, Some(&s), e),
        };
        if let Err(status) = registered {
            tracing::warn!(person = %s.person.person_id, code = ?status.code(), "the hub refused a new account's staff record; the account is taken back");
            if let Err(e) = people::undo_add(&app.pool, &person_id).await {
                return failed(lang, Some(&s), e);
            }
            // The hub names staff by their ids: each is followed by the person's name.
            let said =
                crate::actions::with_names(&app, &s, lang, status.message().to_owned()).await;
            return html_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                pages::problem(
                    lang,
                    Some(&s),
                    &said,
                    pick(
                        lang,
                        "لم يُنشأ الحساب. صحّح ما ذُكر ثم أعد المحاولة من صفحة الحسابات.",
                        "The account was not made. Correct what is said, then try again from the accounts page.",
                    ),
                ),
            );
        }
    }
    if let Err(e) = event(&app, &s, &person_id, "created").await {
        return failed(lang, Some(&s), e);
    }
    let t = |ar, en| pick(lang, ar, en);
    let l = crate::text::Local::new(lang, &app.settings.web);
    let shown = html! {
        section.created role="status" {
            h2 { (t("أُنشئ الحساب", "The account is made")) }
            p { (t("اسم المستخدم: ", "Login: ")) bdi dir="ltr" { (filled.login) } }
            p { (t("كلمة المرور (تُعرض مرة واحدة): ", "Password (shown once): ")) code dir="ltr" { (password) } }
            @if let Some(secret) = &created.totp_secret {
                p { (t("مفتاح رمز التحقق لتطبيق المصادقة (RFC 6238، ستة أرقام، ", "Second-factor key for an authenticator app (RFC 6238, 6 digits, ")) (l.number(30u8)) (t(" ثانية): ", " s): ")) code dir="ltr" { (secret) } }
            }
        }
    };
    render(
        &app,
        lang,
        &s,
        &Filled::default(),
        &Violations::new(),
        Some(shown),
    )
    .await
}

/// A change to one account of the administrator's agency: disable, enable, unlock, or
/// end its sessions. Another agency's account is answered as no account at all.
pub(crate) async fn change_person(
    State(app): State<App>,
    Path((person_id, what)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let lang = lang_of(&headers);
    let (s, _) = match posted(&app, &headers, &body, &[Role::Admin]).await {
        Ok(posted) => posted,
        Err(r) => return r,
    };
    let sql = match what.as_str() {
        "disable" => "UPDATE persons SET disabled = true WHERE person_id = $1 AND agency_id = $2 AND person_id <> $3",
        "enable" => "UPDATE persons SET disabled = false WHERE person_id = $1 AND agency_id = $2 AND person_id <> $3",
        "unlock" => "UPDATE persons SET failed_signins = 0, locked_until = NULL WHERE person_id = $1 AND agency_id = $2 AND person_id <> $3",
        "signout" => "SELECT 1 FROM persons WHERE person_id = $1 AND agency_id = $2 AND person_id <> $3",
        _ => return not_found(lang, &s),
    };
    let found = sqlx::query(sql)
        .bind(&person_id)
        .bind(&s.person.agency_id)
        .bind(&s.person.person_id)
        .execute(&app.pool)
        .await;
    match found {
        Ok(r) if r.rows_affected() == 1 => {}
        Ok(_) => return not_found(lang, &s),
        Err(e) => return failed(lang, Some(&s), e.into()),
    }
    // A disabled account, or one whose sessions are ended, is signed out at once.
    if matches!(what.as_str(), "disable" | "signout") {
        if let Err(e) = session::end_all(&app.pool, &person_id).await {
            return failed(lang, Some(&s), e);
        }
    }
    if let Err(e) = event(&app, &s, &person_id, &what).await {
        return failed(lang, Some(&s), e);
    }
    Redirect::to("/admin/people").into_response()
}

fn not_found(lang: Lang, s: &Session) -> Response {
    html_page(
        StatusCode::NOT_FOUND,
        pages::problem(
            lang,
            Some(s),
            pick(
                lang,
                "لا يوجد هذا الحساب في جهتك.",
                "There is no such account in your agency.",
            ),
            pick(
                lang,
                "افتح صفحة الحسابات واختر الحساب من القائمة.",
                "Open the accounts page and choose the account from the list.",
            ),
        ),
    )
}

/// Records who changed which account, and how (ids only).
async fn event(app: &App, s: &Session, person_id: &str, what: &str) -> Result<(), WebError> {
    sqlx::query(
        "INSERT INTO account_events (agency_id, person_id, by_person, what) VALUES ($1, $2, $3, $4)",
    )
    .bind(&s.person.agency_id)
    .bind(person_id)
    .bind(&s.person.person_id)
    .bind(what)
    .execute(&app.pool)
    .await?;
    Ok(())
}
