# The cases service: a case and its work (acceptance, staff, reviews, plan, closure,
# merging), its consents, service referrals, break-glass access, withdrawal notices, and
# what leaves through the redactor (reads, exports, statistics).

## A case and its work
case-not-found = no case { $case_id }
case-anonymised = case { $case_id } was anonymised by the retention policy (closed longer ago than `retention.anonymise_after_years`): its personal data is gone, so it can no longer be changed or reopened; open a new case with a new referral
case-stale = case { $case_id } is at version { $current }, not { $expected }: reload it and try again
case-id-invalid = case_id: not a valid case id: expected `case_` followed by 32 lowercase hex digits
case-not-in-area = case { $case_id } is not in the area of `{ $agency_id }`
case-no-part = agency `{ $agency_id }` has no part in case { $case_id }
case-not-persons = case { $case_id } is not one of the cases of person { $person_id }
case-owner-only = `{ $agency_id }` is not a case-owning (social affairs) agency
case-list-needs-caseworker = caseworker_id: name a caseworker, or ask for the unassigned queue (unassigned = true)
case-list-not-yours = caseworker_id: you may list your own cases, or as a supervisor your team's and the unassigned queue
case-escalations-since-invalid = since: not an RFC 3339 time such as 2026-11-22T09:00:00Z
case-decision-missing = the acceptance decision is missing
case-review-needs-caseworker = assign a caseworker before recording reviews
case-closure-incomplete = the closure is incomplete: give its reason and whether the parents were consulted
case-closure-parents-not-consulted = closing because the need has ended requires consulting the parents first
case-closure-no-review = the need can only be found ended after at least one review
case-closure-not-18 = the child's date of birth says they are not 18 yet
case-plan-needs-assessment = record the comprehensive assessment before the plan
case-plan-action-not-found = case { $case_id } has no plan action `{ $action_id }`
case-plan-action-done = action { $action_id } is already done
case-link-kind-missing = the kind of link is missing
case-link-other-missing = no other case
case-merge-other-missing = no case to merge
case-merge-keep-merged = case { $case_id } was itself merged into { $merged_into }
case-merge-keep-merged-elsewhere = case { $case_id } was itself merged into another case

## A case's consents
case-consent-merged = this case was merged into another: record consent there
case-consent-not-found = case { $case_id } has no consent `{ $consent_id }`; its consents: { $consents }
case-consent-not-found-none = case { $case_id } has no consent `{ $consent_id }`; its consents: none
case-consent-withdrawn = consent { $consent_id } was withdrawn; grant a new one instead

## Staff and caseloads
staff-not-a-supervisor = `{ $staff_id }` is not a supervisor of { $agency_id }
staff-team-full = supervisor { $supervisor_id } already oversees { $team } caseworkers (the limit is { $max }); supervisors with room: { $room }
staff-team-full-no-room = supervisor { $supervisor_id } already oversees { $team } caseworkers (the limit is { $max }); supervisors with room: none
staff-exists = staff member `{ $staff_id }` already exists
staff-not-a-caseworker = `{ $staff_id }` is not a caseworker of { $agency_id }
staff-not-in-team = caseworker { $staff_id } is not in your team: assign to one you supervise
staff-caseload-full = caseworker { $staff_id } already has { $open } open cases (the limit is { $max }); caseworkers with room: { $room }
staff-caseload-full-no-room = caseworker { $staff_id } already has { $open } open cases (the limit is { $max }); caseworkers with room: none

## Service referrals
service-referral-not-found = no service referral { $service_referral_id }
service-referral-stale = service referral { $service_referral_id } is at version { $current }, not { $expected }: reload it and try again
service-referral-not-party = agency `{ $agency_id }` is not party to service referral { $service_referral_id }
service-referral-case-not-registered = service referrals are made for registered cases; this one is `{ $status }`
service-referral-action-not-found = the plan of case { $case_id } has no action `{ $action_id }`; its actions: { $actions }
service-referral-action-not-found-no-plan = the plan of case { $case_id } has no action `{ $action_id }`; its actions: none (set a plan first)
service-referral-action-done = action { $action_id } is already done; nothing to refer
service-referral-own-agency = action { $action_id } is your own agency's; a service referral goes to another agency
service-referral-already-live = action { $action_id } already has a live service referral, { $service_referral_id }; cancel it first to refer again
service-referral-progress-needs-reason = the service referral is already `in_progress`: a further progress report (a session held, a hearing's outcome) needs its note in `reason`

## Break-glass access
break-glass-not-for-agency-type = { $agency_type } agencies may not break the glass
break-glass-not-high-risk = case { $case_id } is not high risk: only the emergency line may break the glass on it
break-glass-already-reviewed = this break-glass access was already reviewed
break-glass-not-found = no such break-glass access (break_glass_id)
break-glass-not-in-area = break-glass access { $break_glass_id } is not in the area of `{ $agency_id }`

## Withdrawal notices
notice-not-addressee = notice { $notice_id } is not addressed to `{ $agency_id }`
notice-not-found = no such notice (notice_id)
notice-time-invalid = the notice's occurred_at is not RFC 3339

## Referrals in
referral-on-behalf-of-another = the caller `{ $agency_id }` may not submit on behalf of another agency

## What leaves through the redactor: a read, an export, statistics, indicators
sharing-no-policy-rule = the sharing policy gives { $agency_type } agencies nothing for { $purpose }
sharing-no-consent = no active consent or legal basis on case { $case_id } covers `{ $agency_id }` for { $purpose }
sharing-no-assent = the caregiver consented, but the child is old enough to assent and has not, for case { $case_id }
sharing-statistics-aggregates-only = the statistics purpose gets aggregates, never a case: use GetStatistics
sharing-nothing-in-common = what the policy allows { $agency_type } agencies and what consent allows `{ $agency_id }` for { $purpose } do not overlap
export-busy = { $count ->
        [one] 1 export is
       *[other] { $count } exports are
    } running already; retry in a minute
statistics-not-allowed = the sharing policy gives `{ $agency_id }` no statistics
indicators-not-your-governorate = name one of your own governorates: { $governorates }
