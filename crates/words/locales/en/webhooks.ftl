# The agencies' webhooks (crates/webhooks): refusals answered as RFC 9457 problem details
# or FHIR OperationOutcomes, and the agencies' payloads the inbound mappings refuse
# (crates/connect, connectors/*). A refusal of a payload names the field before this text;
# no text quotes a value the agency sent.

# A problem's title: what its HTTP status means (in English, HTTP's reason phrase).
problem-title-400 = Bad Request
problem-title-401 = Unauthorized
problem-title-403 = Forbidden
problem-title-404 = Not Found
problem-title-408 = Request Timeout
problem-title-409 = Conflict
problem-title-413 = Payload Too Large
problem-title-422 = Unprocessable Entity
problem-title-429 = Too Many Requests
problem-title-502 = Bad Gateway
problem-title-503 = Service Unavailable
problem-title-other = The request could not be processed

# The webhook call itself.
webhook-unauthenticated = send this agency's webhook token as `Authorization: Bearer <token>`
webhook-wrong-route = this agency speaks `{ $protocol }`; `{ $route }` is for { $expected } systems
webhook-agency-id-invalid = the agency id in the path is not valid
webhook-body-too-large = the body is larger than the { $max } bytes accepted
webhook-body-timeout = the body did not arrive within { $ms } ms
webhook-body-unreadable = the body could not be read (it ended before its Content-Length, or the connection broke)
webhook-not-utf8 = the body is not UTF-8 text (first bad byte at { $at })
webhook-not-json = the body is not JSON (line { $line }, column { $column })
webhook-message-id-reused = this message id was already used for a different message; give each new message its own id (a repeat of the same message is answered as the first time)
webhook-referral-kept-changing = the referral kept changing while this was applied; send it again
webhook-cannot-take-now = the hub cannot take this now; send it again later (same message id)
webhook-could-not-take = the hub could not take this now; send it again later (same message id)
webhook-hub-busy = the hub is busy; send it again later (same message id)

# Any payload: what is wrong with one field.
inbound-required = is required
inbound-not-string = must be a string
inbound-not-object = must be a JSON object
inbound-not-date = must be a date as YYYY-MM-DD
inbound-not-rfc3339-time = must be a time as RFC 3339
inbound-not-list-of-strings = must be a list of strings
inbound-not-one-of = is not one of { $choices }
inbound-length = must be 1 to { $max } { $max ->
        [one] character
       *[other] characters
    }
inbound-id-characters = must be 1 to { $max } { $max ->
        [one] character
       *[other] characters
    } of A-Z, a-z, 0-9, - _ . :
# A referral in the hub's normalized shape (schools, the emergency line), read with serde:
# only the kind of problem is told, never serde's own words.
inbound-wrong-type-or-vocabulary = a field has the wrong type or a value outside its vocabulary
inbound-not-expected-shape = not a JSON object of the expected shape

# A health agency's FHIR Task.
inbound-not-a-fhir-task = expected a FHIR Task; post other resources elsewhere
inbound-task-status-without-meaning = has no meaning for a referral; send requested, received, accepted, ready, rejected, in-progress, completed, failed or cancelled
inbound-task-status-reason-required = is required (text or a coding) when a referral is rejected, failed or cancelled
inbound-task-based-on = must hold an identifier with system { $system } and the srv_ id of the ServiceRequest we sent

# The justice agency's status of a referral.
inbound-justice-referral-ref-not-srv = must be the srv_ id the referral was sent with
inbound-justice-reason-code-required = is required to reject or withdraw a referral

# A Primero-run directorate's cases, answers and pages.
inbound-primero-sex-not-known = is not female, male or unknown
inbound-primero-age-not-a-child = must be a whole number of years under 18
inbound-primero-concern-unknown = is not a protection concern the hub knows
inbound-primero-risk-not-known = is not high, medium or low
inbound-primero-service-unknown = is not a service type the hub knows
inbound-primero-referral-id-not-srv = must be the srv_ id the hub sent
inbound-primero-answer-status-not-known = is not in_progress, accepted, rejected or done
inbound-primero-rejected-reason-required = is required to reject
inbound-primero-page-without-data = a page of cases must hold a `data` list
