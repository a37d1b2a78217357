//! The case lifecycle's rules (docs/domain.md, workflow steps 2–5), without I/O: which moves
//! a case may make from where it stands, what closure needs, and when things fall due.

use chrono::{DateTime, Duration, Months, NaiveDate, Utc};
use himaya_words::{msg, words, Msg};
use serde::{Deserialize, Serialize};

use crate::record::{CaseStatus, RiskLevel};

vocabulary!(
    /// The first assessment's decision (step 2).
    AcceptanceDecision {
        Register => "register",
        ReferOn => "refer_on",
        Decline => "decline",
    }
);

vocabulary!(
    /// The only reasons a case may close (step 5).
    ClosureReason {
        NeedEnded => "need_ended",
        Death => "death",
        TurnedEighteen => "turned_18",
        MovedOutOfReach => "moved_out_of_reach",
        ContactLost => "contact_lost",
    }
);

vocabulary!(
    /// How a review saw the child and family (step 4).
    ReviewKind {
        HomeVisit => "home_visit",
        MeetingWithChild => "meeting_with_child",
        Phone => "phone",
    }
);

vocabulary!(
    /// What a deadline watches; a missed one escalates to the supervisor.
    DeadlineKind {
        Assignment => "assignment",
        FirstContact => "first_contact",
        Review => "review",
        TurnsEighteen => "turns_18",
        TurnsEighteenSoon => "turns_18_soon",
        PlanAction => "plan_action",
        ServiceReferral => "service_referral",
        // Not a time limit: a referral that reached no agency, escalated at once.
        Undelivered => "undelivered",
    }
);

vocabulary!(
    /// Domains of need in the comprehensive assessment (step 3).
    NeedDomain {
        Safety => "safety",
        Health => "health",
        Education => "education",
        Psychosocial => "psychosocial",
        Legal => "legal",
        Economic => "economic",
    }
);

vocabulary!(
    /// A case-owning agency's staff: caseworkers work cases (each within the caseload
    /// cap), supervisors oversee caseworkers (each within the team cap).
    StaffRole {
        Caseworker => "caseworker",
        Supervisor => "supervisor",
    }
);

vocabulary!(
    /// How two cases found to be about the same family are linked (both kept).
    LinkKind {
        SameChild => "same_child",
        Sibling => "sibling",
    }
);

vocabulary!(
    /// A supervisor's finding on a break-glass access.
    BreakGlassOutcome {
        Justified => "justified",
        Unjustified => "unjustified",
    }
);

/// A move in the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Move {
    Register,
    ReferOn,
    Decline,
    Assign,
    Assess,
    Plan,
    Review,
    Close,
    Reopen,
    Merge,
}

impl Move {
    pub fn arabic(self) -> &'static str {
        match self {
            Move::Register => "تسجيل",
            Move::ReferOn => "إحالة إلى جهة أخرى",
            Move::Decline => "رفض",
            Move::Assign => "إسناد",
            Move::Assess => "تقييم",
            Move::Plan => "وضع خطة",
            Move::Review => "مراجعة",
            Move::Close => "إغلاق",
            Move::Reopen => "إعادة فتح",
            Move::Merge => "دمج",
        }
    }

    /// The move's word in the catalogue (`himaya_words`).
    pub fn word(self) -> &'static str {
        match self {
            Move::Register => "move-register",
            Move::ReferOn => "move-refer-on",
            Move::Decline => "move-decline",
            Move::Assign => "move-assign",
            Move::Assess => "move-assess",
            Move::Plan => "move-plan",
            Move::Review => "move-review",
            Move::Close => "move-close",
            Move::Reopen => "move-reopen",
            Move::Merge => "move-merge",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Move::Register => "register",
            Move::ReferOn => "refer on",
            Move::Decline => "decline",
            Move::Assign => "assign",
            Move::Assess => "assess",
            Move::Plan => "plan",
            Move::Review => "review",
            Move::Close => "close",
            Move::Reopen => "reopen",
            Move::Merge => "merge",
        }
    }
}

impl From<AcceptanceDecision> for Move {
    fn from(d: AcceptanceDecision) -> Move {
        match d {
            AcceptanceDecision::Register => Move::Register,
            AcceptanceDecision::ReferOn => Move::ReferOn,
            AcceptanceDecision::Decline => Move::Decline,
        }
    }
}

/// The moves allowed from each status.
pub fn allowed(status: CaseStatus) -> &'static [Move] {
    match status {
        CaseStatus::Referred => &[Move::Register, Move::ReferOn, Move::Decline, Move::Merge],
        CaseStatus::Registered => &[
            Move::Assign,
            Move::Assess,
            Move::Plan,
            Move::Review,
            Move::Close,
            Move::Merge,
        ],
        CaseStatus::ReferredOn | CaseStatus::Declined | CaseStatus::Closed => {
            &[Move::Reopen, Move::Merge]
        }
        // A merged case lives on in the case it was merged into.
        CaseStatus::Merged => &[],
    }
}

/// A move the current status does not allow; says what is allowed instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.msg())]
pub struct IllegalMove {
    pub from: CaseStatus,
    pub attempted: Move,
}

impl IllegalMove {
    /// The refusal as a message of the catalogue, naming the moves allowed instead.
    pub fn msg(&self) -> Msg {
        let allowed = allowed(self.from);
        let (status, attempted) = (self.from.to_string(), words([self.attempted.word()]));
        if allowed.is_empty() {
            msg!(
                "case-move-after-merge",
                status = status,
                attempted = attempted
            )
        } else {
            msg!(
                "case-move-not-allowed",
                status = status,
                attempted = attempted,
                allowed = words(allowed.iter().map(|m| m.word()))
            )
        }
    }
}

/// The status after `m`, or why `m` is not allowed now.
pub fn apply(from: CaseStatus, m: Move) -> Result<CaseStatus, IllegalMove> {
    if !allowed(from).contains(&m) {
        return Err(IllegalMove { from, attempted: m });
    }
    Ok(match m {
        Move::Register | Move::Reopen => CaseStatus::Registered,
        Move::ReferOn => CaseStatus::ReferredOn,
        Move::Decline => CaseStatus::Declined,
        Move::Assign | Move::Assess | Move::Plan | Move::Review => from,
        Move::Close => CaseStatus::Closed,
        Move::Merge => CaseStatus::Merged,
    })
}

/// The first assessment's outcome, kept on the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acceptance {
    pub decision: AcceptanceDecision,
    /// Criteria from the configured vocabulary that the assessment found.
    pub vulnerability_criteria: Vec<String>,
    /// Target groups from the configured vocabulary (`lifecycle.target_groups`).
    #[serde(default)]
    pub target_groups: Vec<String>,
    /// Why: required to refer on or decline; set by the hub when it routes a
    /// material-need-only case to relief.
    pub reason: Option<String>,
    /// The agency a referred-on case went to.
    pub referred_on_to: Option<String>,
    pub decided_by: String,
    pub decided_at: DateTime<Utc>,
}

/// Who works the case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    pub caseworker_id: String,
    pub supervisor_id: String,
    pub assigned_at: DateTime<Utc>,
}

/// How the case ended, with what the seeds require.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closure {
    pub reason: ClosureReason,
    pub parents_consulted: bool,
    pub final_evaluation: String,
    pub recommendations: String,
    pub closed_by: String,
    pub closed_at: DateTime<Utc>,
}

/// One need found by the comprehensive assessment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    pub domain: NeedDomain,
    pub description: String,
}

/// The comprehensive assessment (step 3): risks, protective factors, needs by domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    pub risk_factors: Vec<String>,
    pub protective_factors: Vec<String>,
    pub needs: Vec<Need>,
    pub assessed_by: String,
    pub assessed_at: DateTime<Utc>,
}

/// An action of the plan: who does what, by when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanAction {
    /// `a1`, `a2`, … within the plan.
    pub action_id: String,
    pub description: String,
    /// The agency responsible (directory id).
    pub responsible_agency: String,
    pub service_type: crate::record::ServiceType,
    pub due_on: NaiveDate,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Goal {
    pub description: String,
    pub actions: Vec<PlanAction>,
}

/// The individual protection plan (step 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub goals: Vec<Goal>,
    pub set_by: String,
    pub set_at: DateTime<Utc>,
}

/// When a plan action falls due: the end of its due day (UTC).
pub fn action_due(due_on: NaiveDate) -> Option<DateTime<Utc>> {
    due_on.and_hms_opt(23, 59, 59).map(|d| d.and_utc())
}

/// The outcome when only material need was found: not a child-protection case.
pub const MATERIAL_NEED_ONLY: &str =
    "poverty or material need alone is not a child-protection vulnerability criterion; the family is referred to relief / cash-assistance support";

/// Deadline settings for one risk level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiskDeadlines {
    pub assign_within: Duration,
    pub first_contact_within: Duration,
    pub review_every: Duration,
}

/// When a child turns 18, from the date of birth.
pub fn eighteenth_birthday(dob: NaiveDate) -> Option<DateTime<Utc>> {
    dob.checked_add_months(Months::new(18 * 12))
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|d| d.and_utc())
}

/// The deadlines watching a child's 18th birthday: a warning `warning` ahead of it, so
/// the closure or the move to adult services can be planned rather than found on the
/// day, and the birthday itself. A warning already past (a child registered a few weeks
/// before turning 18) is kept: it fires at once, which is the warning wanted.
pub fn turns_18(dob: NaiveDate, warning: Duration) -> Vec<(DeadlineKind, DateTime<Utc>)> {
    let Some(at) = eighteenth_birthday(dob) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(2);
    if let Some(soon) = at
        .checked_sub_signed(warning)
        .filter(|_| warning > Duration::zero())
    {
        out.push((DeadlineKind::TurnsEighteenSoon, soon));
    }
    out.push((DeadlineKind::TurnsEighteen, at));
    out
}

/// The deadlines a newly registered case starts with; `turns_18_warning` is the lead
/// time of the warning before the 18th birthday.
pub fn on_registration(
    now: DateTime<Utc>,
    d: &RiskDeadlines,
    dob: Option<NaiveDate>,
    turns_18_warning: Duration,
) -> Vec<(DeadlineKind, DateTime<Utc>)> {
    let mut out = vec![(DeadlineKind::Assignment, now + d.assign_within)];
    if let Some(dob) = dob {
        out.extend(turns_18(dob, turns_18_warning));
    }
    out
}

/// Risk level → index into configuration tables.
pub fn risk_index(r: RiskLevel) -> usize {
    match r {
        RiskLevel::High => 0,
        RiskLevel::Medium => 1,
        RiskLevel::Low => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_says_what_it_allows() {
        assert_eq!(
            apply(CaseStatus::Referred, Move::Register),
            Ok(CaseStatus::Registered)
        );
        assert_eq!(
            apply(CaseStatus::Registered, Move::Close),
            Ok(CaseStatus::Closed)
        );
        assert_eq!(
            apply(CaseStatus::Closed, Move::Reopen),
            Ok(CaseStatus::Registered)
        );
        let e = apply(CaseStatus::Closed, Move::Review).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a case that is `closed` cannot review; allowed: reopen, merge"
        );
        let e = apply(CaseStatus::Referred, Move::Close).unwrap_err();
        assert!(e
            .to_string()
            .contains("allowed: register, refer on, decline, merge"));
        assert_eq!(
            e.msg().render(himaya_words::Lang::Arabic),
            "لا يمكن إغلاق حالة وضعها `referred`؛ المسموح: تسجيل، إحالة إلى جهة أخرى، رفض، دمج"
        );
    }

    #[test]
    fn the_eighteenth_birthday_is_warned_of_ahead() {
        let dob = NaiveDate::from_ymd_opt(2010, 6, 15).unwrap();
        let birthday = eighteenth_birthday(dob).unwrap();
        let got = turns_18(dob, Duration::days(90));
        assert_eq!(
            got,
            vec![
                (
                    DeadlineKind::TurnsEighteenSoon,
                    birthday - Duration::days(90)
                ),
                (DeadlineKind::TurnsEighteen, birthday),
            ]
        );
        assert_eq!(DeadlineKind::TurnsEighteenSoon.as_str(), "turns_18_soon");
        // No lead time: only the birthday.
        assert_eq!(
            turns_18(dob, Duration::zero()),
            vec![(DeadlineKind::TurnsEighteen, birthday)]
        );
        let now = Utc::now();
        let d = RiskDeadlines {
            assign_within: Duration::hours(1),
            first_contact_within: Duration::hours(24),
            review_every: Duration::days(7),
        };
        let kinds: Vec<DeadlineKind> = on_registration(now, &d, Some(dob), Duration::days(90))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            kinds,
            [
                DeadlineKind::Assignment,
                DeadlineKind::TurnsEighteenSoon,
                DeadlineKind::TurnsEighteen
            ]
        );
        // Without a date of birth (an estimated age) neither is watched.
        assert_eq!(on_registration(now, &d, None, Duration::days(90)).len(), 1);
    }

    #[test]
    fn the_eighteenth_birthday_handles_leap_days() {
        let d = NaiveDate::from_ymd_opt(2008, 2, 29).unwrap();
        assert_eq!(
            eighteenth_birthday(d).unwrap().date_naive(),
            NaiveDate::from_ymd_opt(2026, 2, 28).unwrap()
        );
    }
}
