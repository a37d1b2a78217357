//! Signing in and out, and the language switch.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use himaya_proto::status::Lang;

use crate::referral::Form;
use crate::text::{lang_of, pick};
use crate::{csrf_refused, failed, html_page, pages, people, session, signed_in, App};

pub(crate) async fn sign_in_page(headers: HeaderMap, State(app): State<App>) -> Response {
    let lang = lang_of(&headers);
    let pre = session::random_token();
    let cookie = session::set_cookie(
        session::PRE_COOKIE,
        &pre,
        app.settings.web.secure_cookies,
        None,
    );
    let page = crate::oidc::on_sign_in_page(&app, lang, pages::sign_in(lang, &pre, None));
    let mut r = html_page(StatusCode::OK, page);
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub(crate) async fn sign_in(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let lang = lang_of(&headers);
    let f = Form::parse(&body);
    let web = &app.settings.web;
    let again = |status, problem: &str| {
        let pre = session::random_token();
        let page = pages::sign_in(lang, &pre, Some(problem));
        let mut r = html_page(status, crate::oidc::on_sign_in_page(&app, lang, page));
        let c = session::set_cookie(session::PRE_COOKIE, &pre, web.secure_cookies, None);
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(header::SET_COOKIE, v);
        }
        r
    };
    let pre = session::cookie(&headers, session::PRE_COOKIE).unwrap_or_default();
    if !session::csrf_ok(&pre, f.get("pre")) {
        return again(
            StatusCode::FORBIDDEN,
            pick(
                lang,
                "انتهت صلاحية صفحة الدخول؛ أعد المحاولة.",
                "The sign-in page expired; try again.",
            ),
        );
    }
    let outcome = people::sign_in(
        &app.pool,
        web,
        f.get("login"),
        f.get("password"),
        f.get("code"),
    )
    .await;
    let person = match outcome {
        Ok(Ok(p)) => p,
        Ok(Err(people::Refused::WrongCredentials)) => {
            return again(
                StatusCode::UNAUTHORIZED,
                pick(
                    lang,
                    "اسم المستخدم أو كلمة المرور غير صحيحة.",
                    "The login or the password is wrong.",
                ),
            );
        }
        Ok(Err(people::Refused::Locked(until))) => {
            let minutes = ((until - chrono::Utc::now()).num_seconds().max(1) + 59) / 60;
            let minutes = crate::text::number(lang, web.digits, minutes);
            let text = match lang {
                Lang::Arabic => format!("الحساب مقفل مؤقتًا بعد محاولات فاشلة متكررة؛ حاول بعد {minutes} دقيقة، أو اطلب من مسؤول الحسابات في جهتك فتحه."),
                Lang::English => format!("The account is locked after repeated failures; try again in {minutes} minute(s), or ask your agency's account administrator."),
            };
            return again(StatusCode::TOO_MANY_REQUESTS, &text);
        }
        Ok(Err(people::Refused::SecondFactor)) => {
            return again(StatusCode::UNAUTHORIZED, pick(lang, "رمز التحقق مطلوب لدورك أو غير صحيح: أدخل الرمز الحالي من تطبيق المصادقة.", "Your role needs a verification code, or it was wrong: enter the current code from your authenticator app."));
        }
        Err(e) => return failed(lang, None, e),
    };
    let mut r = Redirect::to("/").into_response();
    if let Err(e) = start_session(&app, &person.person_id, &mut r).await {
        return failed(lang, None, e);
    }
    r
}

/// Starts a session for `person_id` on the answer `r`: its cookie, and the sign-in form's
/// token cleared. A new session at every sign-in (here and through the ministry's
/// provider): a cookie planted before it is worth nothing.
pub(crate) async fn start_session(
    app: &App,
    person_id: &str,
    r: &mut Response,
) -> Result<(), crate::WebError> {
    let web = &app.settings.web;
    let (token, _) = session::create(&app.pool, person_id).await?;
    let h = r.headers_mut();
    for c in [
        session::set_cookie(session::COOKIE, &token, web.secure_cookies, None),
        session::set_cookie(session::PRE_COOKIE, "", web.secure_cookies, Some(0)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            h.append(header::SET_COOKIE, v);
        }
    }
    Ok(())
}

pub(crate) async fn sign_out(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    ending(app, headers, body, false).await
}

pub(crate) async fn sign_out_everywhere(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    ending(app, headers, body, true).await
}

pub(crate) async fn ending(
    app: App,
    headers: HeaderMap,
    body: Bytes,
    everywhere: bool,
) -> Response {
    let lang = lang_of(&headers);
    let s = match signed_in(&app, &headers, &[]).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if let Some(r) = csrf_refused(lang, &s, &Form::parse(&body)) {
        return r;
    }
    let ended = if everywhere {
        session::end_all(&app.pool, &s.person.person_id)
            .await
            .map(|_| ())
    } else {
        session::end(&app.pool, &headers).await
    };
    if let Err(e) = ended {
        return failed(lang, Some(&s), e);
    }
    let mut r = Redirect::to("/signin").into_response();
    let c = session::set_cookie(
        session::COOKIE,
        "",
        app.settings.web.secure_cookies,
        Some(0),
    );
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub(crate) async fn switch_language(State(app): State<App>, Path(lang): Path<String>) -> Response {
    let code = if lang == "en" { "en" } else { "ar" };
    let c = session::set_cookie(
        "himaya_lang",
        code,
        app.settings.web.secure_cookies,
        Some(31_536_000),
    );
    let mut r = Redirect::to("/").into_response();
    if let Ok(v) = HeaderValue::from_str(&c) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}
