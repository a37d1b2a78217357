//! Service referrals between agencies (docs/domain.md, workflow step 3, "Referrals between
//! agencies"), modelled on the FHIR Task state machine: who may move a referral from where
//! to where.

use himaya_words::{msg, words, Msg};
use serde::{Deserialize, Serialize};

use crate::record::{RiskLevel, ServiceType};

vocabulary!(
    /// The states of a service referral (a subset of FHIR `TaskStatus`).
    TaskState {
        Requested => "requested",
        Received => "received",
        Accepted => "accepted",
        Rejected => "rejected",
        InProgress => "in_progress",
        Completed => "completed",
        Failed => "failed",
        Cancelled => "cancelled",
    }
);

vocabulary!(
    /// What the family can pay towards a health service's costs, as the caseworker
    /// found it (the caller says; the hub decides the coverage from it).
    AbilityToPay {
        CannotPay => "none",
        Part => "part",
        Full => "full",
    }
);

vocabulary!(
    /// How much of a health service's costs the child-protection programme covers
    /// (docs/domain.md, "Medical costs"); the family pays the rest.
    MedicalCoverage {
        Full => "full",
        Partial => "partial",
        NotCovered => "none",
    }
);

impl AbilityToPay {
    pub fn english(self) -> &'static str {
        match self {
            AbilityToPay::CannotPay => "cannot pay at all",
            AbilityToPay::Part => "can pay part",
            AbilityToPay::Full => "can pay fully",
        }
    }

    pub fn arabic(self) -> &'static str {
        match self {
            AbilityToPay::CannotPay => "لا تستطيع الدفع",
            AbilityToPay::Part => "تستطيع دفع جزء",
            AbilityToPay::Full => "تستطيع الدفع كاملًا",
        }
    }
}

impl MedicalCoverage {
    pub fn english(self) -> &'static str {
        match self {
            MedicalCoverage::Full => "100 % covered by the programme",
            MedicalCoverage::Partial => "partly covered; the family pays the rest",
            MedicalCoverage::NotCovered => "not covered; the family pays",
        }
    }

    pub fn arabic(self) -> &'static str {
        match self {
            MedicalCoverage::Full => "تغطية كاملة 100٪ من البرنامج",
            MedicalCoverage::Partial => "تغطية جزئية؛ تدفع الأسرة الباقي",
            MedicalCoverage::NotCovered => "بلا تغطية؛ تدفع الأسرة",
        }
    }
}

/// Only a health service referral carries medical costs (the seeds' rule is about
/// medical costs; psychosocial or legal services are not billed this way).
pub fn has_medical_costs(service: ServiceType) -> bool {
    service == ServiceType::Health
}

/// Who pays a health service (docs/domain.md, "Medical costs"): 100 % when
/// the case meets a high, urgent risk criterion (its risk level is high: every high-risk
/// case is urgent) and the caregiver cannot pay at all; partial where the family can pay
/// part; nothing from the programme where it can pay fully. A family that cannot pay at
/// all but whose case is not high risk gets partial coverage: the seeds make 100 % depend
/// on both conditions, so the rest is for the caseworker to find (e.g. a relief agency).
pub fn medical_coverage(risk: RiskLevel, ability: AbilityToPay) -> MedicalCoverage {
    match (ability, risk) {
        (AbilityToPay::CannotPay, RiskLevel::High) => MedicalCoverage::Full,
        (AbilityToPay::CannotPay | AbilityToPay::Part, _) => MedicalCoverage::Partial,
        (AbilityToPay::Full, _) => MedicalCoverage::NotCovered,
    }
}

/// Which side of the referral is acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The case-owning agency that made the referral.
    Referrer,
    /// The agency asked to provide the service.
    Receiver,
}

impl TaskState {
    /// The states the given side may move a referral to from `self`. The receiver
    /// answers and reports progress (in progress again: one more report, such as a
    /// hearing's outcome, which must carry its note); the referrer may only cancel, until
    /// the end.
    pub fn next(self, side: Side) -> &'static [TaskState] {
        use TaskState::*;
        match (self, side) {
            (Requested, Side::Receiver) => &[Received, Accepted, Rejected],
            (Received, Side::Receiver) => &[Accepted, Rejected],
            (Accepted, Side::Receiver) => &[InProgress, Completed, Failed],
            (InProgress, Side::Receiver) => &[InProgress, Completed, Failed],
            (Requested | Received | Accepted | InProgress, Side::Referrer) => &[Cancelled],
            _ => &[],
        }
    }

    /// Ended: nothing more can happen to it.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Rejected | TaskState::Completed | TaskState::Failed | TaskState::Cancelled
        )
    }

    /// The receiving agency has answered (the referral's deadline is met).
    pub fn is_answered(self) -> bool {
        !matches!(self, TaskState::Requested | TaskState::Received)
    }

    /// A report that changes no state (in progress, again) records only its note, so it
    /// needs one.
    pub fn is_progress_report(from: TaskState, to: TaskState) -> bool {
        from == to && to == TaskState::InProgress
    }

    /// Moving there needs a reason (a refusal, a failure, a cancellation).
    pub fn needs_reason(self) -> bool {
        matches!(
            self,
            TaskState::Rejected | TaskState::Failed | TaskState::Cancelled
        )
    }

    /// The state's word in the catalogue (`himaya_words`).
    pub fn word(self) -> &'static str {
        match self {
            TaskState::Requested => "task-state-requested",
            TaskState::Received => "task-state-received",
            TaskState::Accepted => "task-state-accepted",
            TaskState::Rejected => "task-state-rejected",
            TaskState::InProgress => "task-state-in-progress",
            TaskState::Completed => "task-state-completed",
            TaskState::Failed => "task-state-failed",
            TaskState::Cancelled => "task-state-cancelled",
        }
    }

    pub fn arabic(self) -> &'static str {
        match self {
            TaskState::Requested => "مطلوبة",
            TaskState::Received => "مستلمة",
            TaskState::Accepted => "مقبولة",
            TaskState::Rejected => "مرفوضة",
            TaskState::InProgress => "قيد التنفيذ",
            TaskState::Completed => "مكتملة",
            TaskState::Failed => "متعذرة",
            TaskState::Cancelled => "ملغاة",
        }
    }
}

/// A move the state machine does not allow; says what is allowed instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.msg())]
pub struct IllegalTransition {
    pub from: TaskState,
    pub to: TaskState,
    pub side: Side,
}

impl IllegalTransition {
    /// The refusal as a message of the catalogue, naming the states allowed instead.
    pub fn msg(&self) -> Msg {
        let next = self.from.next(self.side);
        let side = words([match self.side {
            Side::Referrer => "side-referrer",
            Side::Receiver => "side-receiver",
        }]);
        let (from, to) = (self.from.to_string(), self.to.to_string());
        if next.is_empty() {
            msg!("task-move-ended", from = from, to = to, side = side)
        } else {
            msg!(
                "task-move-not-allowed",
                from = from,
                to = to,
                side = side,
                allowed = words(next.iter().map(|s| s.word()))
            )
        }
    }
}

/// Checks a move; returns the new state or why not.
pub fn transition(
    from: TaskState,
    to: TaskState,
    side: Side,
) -> Result<TaskState, IllegalTransition> {
    let next = from.next(side);
    if next.contains(&to) {
        return Ok(to);
    }
    Err(IllegalTransition { from, to, side })
}

#[cfg(test)]
mod tests {
    use super::*;
    use TaskState::*;

    #[test]
    fn the_happy_path_and_its_ends() {
        let mut s = Requested;
        for to in [Received, Accepted, InProgress, Completed] {
            s = transition(s, to, Side::Receiver).unwrap();
        }
        assert!(s.is_final());
        for end in [Rejected, Completed, Failed, Cancelled] {
            for side in [Side::Referrer, Side::Receiver] {
                assert!(end.next(side).is_empty());
            }
        }
    }

    #[test]
    fn each_side_only_makes_its_own_moves() {
        assert!(transition(Requested, Accepted, Side::Referrer).is_err());
        assert!(transition(Accepted, Cancelled, Side::Receiver).is_err());
        assert_eq!(
            transition(InProgress, Cancelled, Side::Referrer).unwrap(),
            Cancelled
        );
        let e = transition(Completed, Accepted, Side::Receiver).unwrap_err();
        assert!(e.to_string().contains("it has ended"), "{e}");
        let e = transition(Received, Completed, Side::Receiver).unwrap_err();
        assert!(
            e.to_string().ends_with("allowed: accepted, rejected"),
            "{e}"
        );
        assert!(e
            .msg()
            .render(himaya_words::Lang::Arabic)
            .ends_with("المسموح: مقبولة، مرفوضة"));
    }

    #[test]
    fn medical_costs_follow_the_seeds_rule() {
        use AbilityToPay::*;
        use RiskLevel::{High, Low, Medium};
        // 100 % only at high risk with a caregiver who cannot pay at all.
        assert_eq!(medical_coverage(High, CannotPay), MedicalCoverage::Full);
        for risk in [Medium, Low] {
            assert_eq!(medical_coverage(risk, CannotPay), MedicalCoverage::Partial);
        }
        for risk in [High, Medium, Low] {
            assert_eq!(medical_coverage(risk, Part), MedicalCoverage::Partial);
            assert_eq!(medical_coverage(risk, Full), MedicalCoverage::NotCovered);
        }
        // The wire codes are a closed vocabulary both ways.
        assert_eq!(AbilityToPay::parse("none"), Some(CannotPay));
        assert_eq!(AbilityToPay::parse("some"), None);
        assert_eq!(
            MedicalCoverage::parse("partial"),
            Some(MedicalCoverage::Partial)
        );
        assert_eq!(MedicalCoverage::NotCovered.as_str(), "none");
        assert!(has_medical_costs(ServiceType::Health));
        assert!(!has_medical_costs(ServiceType::Psychosocial));
    }

    #[test]
    fn answered_means_accepted_or_rejected_or_later() {
        assert!(!Requested.is_answered() && !Received.is_answered());
        assert!(Accepted.is_answered() && Rejected.is_answered() && Cancelled.is_answered());
        assert!(Rejected.needs_reason() && !Accepted.needs_reason());
    }
}
