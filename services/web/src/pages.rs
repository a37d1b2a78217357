//! The pages' common frame: Arabic and right to left unless English was chosen, the
//! stylesheet served by the hub (no CDN, no script), who is signed in, the language
//! switch and sign-out. Names people typed are shown as given, isolated with `<bdi>` so
//! that no character in them can reorder the page around them. The Arabic face (a subset
//! of Noto Naskh Arabic, `static/fonts/`) is served by the hub too.

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use himaya_proto::status::Lang;
use maud::{html, Markup, DOCTYPE};

use crate::session::Session;
use crate::text::{label, pick};

/// A whole page.
pub fn page(lang: Lang, title: &str, session: Option<&Session>, body: Markup) -> Markup {
    let (code, dir) = match lang {
        Lang::Arabic => ("ar", "rtl"),
        Lang::English => ("en", "ltr"),
    };
    html! {
        (DOCTYPE)
        html lang=(code) dir=(dir) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — " (pick(lang, "حماية", "Himaya")) }
                link rel="stylesheet" href="/static/himaya.css";
            }
            body {
                header {
                    a.brand href="/" { (pick(lang, "حماية", "Himaya")) }
                    nav {
                        @if let Some(s) = session {
                            span.who {
                                bdi { (s.person.name_ar) }
                                " · "
                                @for r in &s.person.roles { span.role { (label(r.as_str(), lang)) } " " }
                            }
                            form method="post" action="/signout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                button type="submit" { (pick(lang, "خروج", "Sign out")) }
                            }
                        }
                        @match lang {
                            Lang::Arabic => a href="/lang/en" lang="en" { "English" },
                            Lang::English => a href="/lang/ar" lang="ar" { "العربية" },
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// The sign-in form; `problem` says why the last try was refused.
pub fn sign_in(lang: Lang, pre: &str, problem: Option<&str>) -> Markup {
    let t = |ar, en| pick(lang, ar, en);
    page(
        lang,
        t("تسجيل الدخول", "Sign in"),
        None,
        html! {
            h1 { (t("تسجيل الدخول", "Sign in")) }
            @if let Some(p) = problem {
                p.error role="alert" { (p) }
            }
            form method="post" action="/signin" {
                input type="hidden" name="pre" value=(pre);
                label for="login" { (t("اسم المستخدم", "Login")) }
                input #login name="login" autocomplete="username" required maxlength="100" dir="ltr";
                label for="password" { (t("كلمة المرور", "Password")) }
                input #password type="password" name="password" autocomplete="current-password" required maxlength="200" dir="ltr";
                label for="code" { (t("رمز التحقق (للمشرفين وموظفي الخط والمسؤولين)", "Verification code (supervisors, operators, administrators)")) }
                input #code name="code" inputmode="numeric" autocomplete="one-time-code" maxlength="8" dir="ltr";
                button type="submit" { (t("دخول", "Sign in")) }
            }
            p { a href="/services" { (t("خريطة الخدمات المتاحة للأطفال (دون تسجيل دخول)", "Services available to children (no sign-in)")) } }
        },
    )
}

/// A page saying what went wrong and what to do next.
pub fn problem(lang: Lang, session: Option<&Session>, what: &str, next: &str) -> Markup {
    page(
        lang,
        pick(lang, "تعذر إتمام الطلب", "This could not be done"),
        session,
        html! {
            h1 { (pick(lang, "تعذر إتمام الطلب", "This could not be done")) }
            p.error role="alert" { (what) }
            p { (next) }
            p { a href="/" { (pick(lang, "العودة إلى الصفحة الرئيسية", "Back to the start page")) } }
        },
    )
}

/// The web fonts the stylesheet names, by file name. Each name carries the first ten hex
/// digits of the file's SHA-256, so a browser may keep it for a year: a changed font is
/// another name (static/fonts/README.md regenerates them).
pub(crate) const FONTS: &[(&str, &[u8])] = &[
    (
        "noto-naskh-arabic-regular.a682c404c8.woff2",
        include_bytes!("../static/fonts/noto-naskh-arabic-regular.a682c404c8.woff2"),
    ),
    (
        "noto-naskh-arabic-bold.31c6a28a32.woff2",
        include_bytes!("../static/fonts/noto-naskh-arabic-bold.31c6a28a32.woff2"),
    ),
];

/// `/static/fonts/<name>`: one of [`FONTS`], cached for a year; anything else, 404.
pub(crate) async fn font(Path(name): Path<String>) -> Response {
    match FONTS.iter().find(|(n, _)| *n == name) {
        Some((_, bytes)) => (
            [
                (header::CONTENT_TYPE, "font/woff2"),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ],
            *bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn each_font_is_named_by_its_hash_and_the_stylesheet_names_exactly_these() {
        let css = include_str!("../static/himaya.css");
        for (name, bytes) in FONTS {
            let hash = hex::encode(Sha256::digest(bytes));
            assert!(
                name.contains(&format!(".{}.", &hash[..10])),
                "{name}: {hash}"
            );
            assert!(bytes.starts_with(b"wOF2"), "{name} is WOFF2");
            assert!(
                css.contains(&format!("url(\"/static/fonts/{name}\")")),
                "the stylesheet names {name}"
            );
        }
        assert_eq!(
            css.matches("url(\"/static/fonts/").count(),
            css.matches("@font-face").count(),
            "every @font-face has one served source"
        );
    }
}
