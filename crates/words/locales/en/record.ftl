# The record's rules: what is wrong with one field (a field violation names the field
# before this text), and the moves a case's or a service referral's status allows.

problem-required = is required
problem-too-long = is longer than { $max } characters
problem-control-characters = contains control characters
problem-not-latin-script = must be written in Latin letters (a transliteration)
problem-no-letters = must contain at least one letter
problem-invalid-date = is not a date in the form YYYY-MM-DD
problem-date-in-future = is in the future
problem-not-a-child = makes the person 18 or older: case management is for children
problem-age-out-of-range = must be between 0 and 17 years
problem-both-birth-date-and-age = give either the date of birth or the estimated age, not both
problem-neither-birth-date-nor-age = give the date of birth or, without documents, an estimated age
problem-not-chosen = must be chosen; one of: { $choices }
problem-at-least-one = needs at least one entry
problem-labour-criteria-required = exploitative labour needs at least one criterion (denies education or play, physical harm, underpaid for being a child, or a worst form)
problem-labour-criteria-only-for-labour = labour criteria apply only to an exploitative_labour concern
problem-invalid-phone = is not a phone number (digits, optionally starting with +, 6 to 20 digits)
problem-invalid-code = is not valid: expected { $expected }
problem-too-many = has more than { $max } entries
problem-source-mismatch = does not match the way this referral was submitted
problem-out-of-range = must be between { $min } and { $max }
problem-contradicts = permits and denies the same recipient, purpose and data as { $other }
problem-expired = has already ended, or ends before it starts
problem-not-both = give this or { $other }, not both
problem-not-in-gazetteer = is not a place in the gazetteer (spellings with ة/ه, ى/ي or any hamza form are accepted); one of: { $choices }
problem-invisible-characters = contains invisible direction or zero-width characters (U+200B–U+200F, U+202A–U+202E, U+2066–U+2069): type the name without them

# The status message above the list of field violations.
violations-summary = the request is incomplete or invalid ({ $count ->
        [one] 1 problem
       *[other] { $count } problems
    })
violations-more = and { $count } more (see the field violations)

move-register = register
move-refer-on = refer on
move-decline = decline
move-assign = assign
move-assess = assess
move-plan = plan
move-review = review
move-close = close
move-reopen = reopen
move-merge = merge
case-move-not-allowed = a case that is `{ $status }` cannot { $attempted }; allowed: { $allowed }
case-move-after-merge = a case that is `{ $status }` cannot { $attempted }: it was merged into another case, which lives on

# A service referral's states, as the API names them.
task-state-requested = requested
task-state-received = received
task-state-accepted = accepted
task-state-rejected = rejected
task-state-in-progress = in_progress
task-state-completed = completed
task-state-failed = failed
task-state-cancelled = cancelled
side-referrer = referring agency
side-receiver = receiving agency
task-move-not-allowed = a service referral that is `{ $from }` cannot become `{ $to }` by the { $side }; allowed: { $allowed }
task-move-ended = a service referral that is `{ $from }` cannot become `{ $to }` by the { $side }: it has ended, or only the other agency may move it now
problem-not-an-id = is not an id of this kind: expected `{ $prefix }` followed by 32 lowercase hex digits
