//! Feedback to referrers: when a case is registered, referred on, declined, assigned,
//! closed or reopened, the agencies that referred it (a school, the emergency line, a
//! clinic) hear of it through their connector: which case, what changed, when, in Arabic
//! and English. Ids and a status only (the `reference` category), and only where the
//! sharing policy gives the referrer's agency type the reference category for some
//! purpose; every such disclosure, and every refusal, is in the disclosure log.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use himaya_bus::{Exchange, HandleError, Handler, Incoming, Outgoing};
use himaya_events::{
    decode, encode, new_message_id, CaseUpdated, DeliveryRequested, DisclosureRecorded, Event,
};
use himaya_record::{DataCategory, Purpose};
use serde_json::json;

use crate::{log_decision, Router, RouterError};

pub const QUEUE: &str = "router.case-updated";
/// Ids of feedback deliveries (`fbk_<case>_v<version>`).
pub const PREFIX: &str = "fbk_";

/// The changes a referrer hears of, with what it reads (Arabic, English).
fn message(change: &str) -> Option<(&'static str, &'static str)> {
    Some(match change {
        "registered" => (
            "قُبلت الحالة وسُجّلت لإدارة الحالات.",
            "The case was accepted and registered for case management.",
        ),
        "referred_on" => (
            "أُحيلت الحالة إلى خدمات مجتمعية.",
            "The case was referred on to community services.",
        ),
        "declined" => (
            "لم تُقبل الحالة لإدارة الحالات.",
            "The case was not accepted for case management.",
        ),
        "assigned" => (
            "عُيّن أخصائي حالة لمتابعة الحالة.",
            "A caseworker was assigned to the case.",
        ),
        "closed" => ("أُغلقت الحالة.", "The case was closed."),
        "reopened" => ("أُعيد فتح الحالة.", "The case was reopened."),
        "undelivered" => (
            "تعذر توصيل إحالة عن هذه الحالة إلى أي جهة. أُبلغت الوزارة المسؤولة عن الحالة، وستُرسل الإحالة فور معالجة السبب.",
            "A referral about this case could not be delivered to any agency. The ministry that owns the case has been told, and it will be sent as soon as the cause is fixed.",
        ),
        _ => return None,
    })
}

pub(crate) struct Feedback(pub(crate) Arc<Router>);

impl Feedback {
    async fn feed_back(&self, e: &CaseUpdated) -> Result<(), RouterError> {
        let r = &self.0;
        let mut tx = r.pool().begin().await?;
        if !himaya_store::inbox::claim(&mut tx, QUEUE, &e.message_id).await? {
            tx.rollback().await?;
            return Ok(());
        }
        let Some((ar, en)) = message(&e.change) else {
            tx.commit().await?;
            return Ok(());
        };
        // The event names the referral that opened the case and its referrer, so no
        // table of the router's can lag behind it.
        let referrers: Vec<(String, String)> = match (&e.referral_id, &e.referrer_agency_id) {
            (Some(r), Some(a)) => vec![(r.clone(), a.clone())],
            _ => Vec::new(),
        };
        // An undelivered referral is not a new version of the case: its feedback has an id
        // of its own (the event's), so it is neither taken for the version's own
        // feedback nor deduplicated against it.
        let feedback_id = match e.change.as_str() {
            "undelivered" => format!("{PREFIX}{}_u{}", e.case_id, e.message_id),
            _ => format!("{PREFIX}{}_v{}", e.case_id, e.version),
        };
        for (referral_id, agency_id) in referrers {
            let Some(agency) = r.settings.agencies.get(&agency_id) else {
                continue;
            };
            if agency.endpoint.is_none() {
                continue;
            }
            r.ensure_queues([agency_id.as_str()]).await?;
            let purpose = Purpose::ALL.iter().copied().find(|p| {
                *p != Purpose::Statistics
                    && r.settings
                        .sharing
                        .allowed(agency.agency_type, *p)
                        .contains(&DataCategory::Reference)
            });
            let base = DisclosureRecorded {
                message_id: new_message_id(),
                occurred_at: Utc::now().to_rfc3339(),
                source: "router".into(),
                channel: "feedback".into(),
                case_id: e.case_id.clone(),
                referral_id: Some(feedback_id.clone()),
                recipient: agency_id.clone(),
                purpose: purpose.unwrap_or(Purpose::ServiceProvision).as_str().into(),
                decision: "deny".into(),
                reason: Some("no_policy_rule".into()),
                categories: Vec::new(),
                basis: Vec::new(),
                delivery_message_id: None,
                person: None,
            };
            let Some(purpose) = purpose else {
                log_decision(&mut tx, &base).await?;
                continue;
            };
            let document = json!({
                "case_id": e.case_id,
                "referral_id": referral_id,
                "change": e.change,
                "status": e.status,
                "version": e.version,
                "at": e.occurred_at,
                "message_ar": ar,
                "message_en": en,
            });
            let delivery = DeliveryRequested {
                message_id: new_message_id(),
                occurred_at: Utc::now().to_rfc3339(),
                agency_id: agency_id.clone(),
                case_id: e.case_id.clone(),
                referral_id: feedback_id.clone(),
                purpose: purpose.as_str().into(),
                priority: "routine".into(),
                idempotency_key: format!("{feedback_id}:{agency_id}"),
                categories: vec![DataCategory::Reference.as_str().into()],
                document_json: document.to_string(),
                service_type: None,
                kind: "outcome".into(),
                medical_coverage: None,
            };
            let mut headers = BTreeMap::new();
            headers.insert("x-correlation-id".to_owned(), referral_id.clone());
            let msg = Outgoing {
                exchange: Exchange::Delivery,
                routing_key: agency_id.clone(),
                payload: encode(&delivery)?,
                message_id: delivery.message_id.clone(),
                event_type: DeliveryRequested::NAME.into(),
                // The emergency line's acknowledgement is due within the response deadline.
                priority: if e.change == "assigned" { 9 } else { 1 },
                headers,
            };
            himaya_store::outbox::enqueue(&mut tx, &msg).await?;
            let logged = DisclosureRecorded {
                decision: "permit".into(),
                reason: None,
                categories: delivery.categories.clone(),
                // The referrer hears what became of its own referral.
                basis: vec![format!("referrer:{referral_id}")],
                delivery_message_id: Some(delivery.message_id.clone()),
                ..base
            };
            log_decision(&mut tx, &logged).await?;
            tracing::info!(case_id = %e.case_id, agency = %agency_id, change = %e.change, "feedback queued for the referrer");
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Handler for Feedback {
    async fn handle(&self, msg: &Incoming) -> Result<(), HandleError> {
        let e = decode::<CaseUpdated>(msg.payload()).map_err(HandleError::park)?;
        self.feed_back(&e).await.map_err(HandleError::retry)
    }
}
