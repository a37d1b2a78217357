//! Who a referral goes to, and why it would go to no one. The router decides this for
//! every referral; the cases service asks the same question when a call is answered, so
//! that whoever made the referral hears at once when it cannot be delivered, and why.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use himaya_record::{CaseRecord, Purpose};
use himaya_sharing::{decide, DenyReason, Recipient};

use crate::{AgencySettings, Settings};

/// Why a referral reaches no agency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Obstacle {
    /// No connected agency offers a requested service in the child's governorate.
    NoAgency,
    /// The consent layer refuses every agency that could take it.
    Refused(DenyReason),
}

impl Obstacle {
    /// The reason as recorded on the case and carried in events.
    pub fn code(self) -> &'static str {
        match self {
            Obstacle::NoAgency => "no_agency",
            Obstacle::Refused(r) => r.as_str(),
        }
    }

    /// What a person reads, and what fixes it: (English, Arabic).
    pub fn explain(code: &str) -> (&'static str, &'static str) {
        match code {
            "no_agency" => (
                "no connected agency offers the requested service in the child's governorate; it will be sent when one is connected",
                "لا توجد جهة متصلة تقدم الخدمة المطلوبة في محافظة الطفل؛ ستُرسل الإحالة عند اتصال جهة بها",
            ),
            "no_consent" => (
                "no active consent covers the receiving agency: record the caregiver's consent (GrantConsent) and it is sent",
                "لا توجد موافقة سارية تشمل الجهة المستقبلة: سجّل موافقة ولي الأمر وستُرسل الإحالة",
            ),
            "no_assent" => (
                "the caregiver consented, but the child is old enough to assent and has not: record the child's assent and it is sent",
                "وافق ولي الأمر، لكن الطفل في سن تتطلب موافقته ولم يوافق: سجّل موافقة الطفل وستُرسل الإحالة",
            ),
            "no_policy_rule" | "policy_and_consent_share_nothing" => (
                "the sharing policy lets the receiving agency see nothing of this case: the hub's operators must review the policy",
                "سياسة المشاركة لا تسمح للجهة المستقبلة بأي بيانات من هذه الحالة: على مشغلي المنصة مراجعة السياسة",
            ),
            "rejected" => (
                "the agency's system refused the delivery: see its reason in the case history",
                "رفض نظام الجهة استلام الإحالة: انظر السبب في سجل الحالة",
            ),
            "parked" => (
                "the delivery could not be read by the connector and was parked: the hub's operators must replay it",
                "تعذر على الموصل قراءة الإحالة فأوقفت جانبًا: على مشغلي المنصة إعادة إرسالها",
            ),
            _ => (
                "the referral could not be delivered",
                "تعذر توصيل الإحالة",
            ),
        }
    }
}

impl Settings {
    /// Agencies with an endpoint and not cut off: the only ones a delivery can reach.
    pub fn connected(&self) -> Vec<(String, Arc<AgencySettings>)> {
        self.agencies
            .snapshot()
            .iter()
            .filter(|(_, a)| a.endpoint.is_some() && !a.suspended)
            .map(|(id, a)| (id.clone(), a.clone()))
            .collect()
    }

    /// The agencies that should receive a case referral: connected, offering a requested
    /// service, covering the child's governorate, and not the referrer itself.
    pub fn recipients(&self, record: &CaseRecord) -> Vec<(String, Arc<AgencySettings>)> {
        self.connected()
            .into_iter()
            .filter(|(id, a)| {
                record.referral.source.agency_id.as_deref() != Some(id.as_str())
                    && a.covers(&record.child.governorate)
                    && a.services
                        .iter()
                        .any(|s| record.referral.requested_services.contains(s))
            })
            .collect()
    }

    /// Whether the case-owning ministry takes a case referral itself, connector or not:
    /// a social-affairs agency covering the child's governorate offers a requested service
    /// (case management, psychosocial support…). It works its cases through the API (its
    /// unassigned queue, escalations, exports), so the child is in someone's hands. A
    /// referral asking only for what no such ministry offers must reach a connected agency.
    pub fn owner_takes(&self, record: &CaseRecord) -> bool {
        self.agencies.snapshot().values().any(|a| {
            !a.suspended
                && a.agency_type == himaya_record::AgencyType::SocialAffairs
                && a.covers(&record.child.governorate)
                && a.services
                    .iter()
                    .any(|s| record.referral.requested_services.contains(s))
        })
    }

    /// Why a referral of `record` would reach no agency (`to`: the one agency a service
    /// referral names), or `None` when some agency may receive it. A named agency without
    /// a connector is no obstacle: it answers through the API.
    pub fn obstacle(
        &self,
        record: &CaseRecord,
        to: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<Obstacle> {
        let targets: Vec<(String, Arc<AgencySettings>)> = match to {
            None => self.recipients(record),
            Some(id) => self
                .connected()
                .into_iter()
                .filter(|(a, _)| a.as_str() == id)
                .collect(),
        };
        if targets.is_empty() {
            return match to {
                None if !self.owner_takes(record) => Some(Obstacle::NoAgency),
                _ => None,
            };
        }
        let mut refused = None;
        for (id, a) in targets {
            let to = Recipient {
                agency_id: &id,
                agency_type: a.agency_type,
            };
            // The decision alone: whether it may go, not what would go.
            match decide(
                &self.sharing,
                &self.consent,
                record,
                to,
                Purpose::ServiceProvision,
                now,
            ) {
                Ok(_) => return None,
                Err(reason) => refused = Some(Obstacle::Refused(reason)),
            }
        }
        refused
    }
}
