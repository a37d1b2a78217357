//! The community's page of the service map (docs/domain.md: every area keeps a map of the
//! services available to children, shared with the community): no sign-in, no personal
//! data, by governorate.

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use himaya_proto::status::Lang;
use himaya_proto::v1 as pb;
use maud::html;
use tonic::metadata::MetadataValue;

use crate::referral::Form;
use crate::text::{label, lang_of, pick};
use crate::{html_page, pages, App};

pub(crate) async fn service_map(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let lang = lang_of(&headers);
    let q = Form::parse(query.unwrap_or_default().as_bytes());
    let asked = q.get("governorate");
    let place = app.settings.gazetteer.governorate(asked);
    let services = match place {
        None => Vec::new(),
        Some(g) => {
            let mut req = tonic::Request::new(pb::FindServicesRequest {
                governorate: g.name_ar.clone(),
                ..Default::default()
            });
            req.metadata_mut()
                .insert("accept-language", MetadataValue::from_static(lang.tag()));
            match pb::directory_client::DirectoryClient::new(app.hub.channel())
                .find_services(req)
                .await
            {
                Ok(r) => r.into_inner().services,
                Err(status) => {
                    tracing::warn!(code = ?status.code(), "the public service map could not be read");
                    return html_page(
                        StatusCode::BAD_GATEWAY,
                        pages::problem(
                            lang,
                            None,
                            pick(
                                lang,
                                "تعذر عرض خريطة الخدمات الآن.",
                                "The service map cannot be shown now.",
                            ),
                            pick(lang, "أعد المحاولة بعد قليل.", "Try again shortly."),
                        ),
                    );
                }
            }
        }
    };
    let t = |ar, en| pick(lang, ar, en);
    let name = |ar: &str, en: &str| match lang {
        Lang::Arabic => ar.to_owned(),
        Lang::English => en.to_owned(),
    };
    let body = html! {
        h1 { (t("خريطة الخدمات المتاحة للأطفال", "Services available to children")) }
        form method="get" action="/services" {
            label for="governorate" { (t("المحافظة", "Governorate")) }
            select #governorate name="governorate" {
                @for g in &app.settings.gazetteer.governorates {
                    option value=(g.name_ar) selected[place.is_some_and(|p| p.code == g.code)] { (name(&g.name_ar, &g.name_en)) }
                }
            }
            button type="submit" { (t("عرض", "Show")) }
        }
        @if let Some(g) = place {
            h2 { (name(&g.name_ar, &g.name_en)) }
            @if services.is_empty() { p { (t("لا توجد خدمات مسجلة هنا بعد.", "No services are listed here yet.")) } }
            ul {
                @for s in &services {
                    li {
                        strong dir="auto" { (name(&s.name_ar, &s.name_en)) }
                        " · " (label(himaya_proto::convert::service_from(s.service_type).map(|k| k.as_str()).unwrap_or(""), lang))
                        @if !s.districts.is_empty() { " · " bdi { (s.districts.join("، ")) } }
                        @if !s.accepting { " · " (t("لا يستقبل حاليًا", "not taking new children")) }
                    }
                }
            }
        }
    };
    html_page(
        StatusCode::OK,
        pages::page(lang, t("خريطة الخدمات", "Service map"), None, body),
    )
}
