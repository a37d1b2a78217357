# The gateway: who is calling, and what their agency and role may call.

caller-unidentified = say which agency is calling (x-himaya-agency metadata, or `--as` on the CLI)
caller-unknown = x-himaya-agency: the agency named is not in the directory
gateway-no-certificate = present your agency's certificate (mutual TLS; `--certs` on the CLI)
gateway-web-names-no-agency = x-himaya-agency: the web component must name an agency of the directory
gateway-web-names-no-person = x-himaya-person: the web component must name the person acting
gateway-certificate-unreadable = the client certificate cannot be read
gateway-certificate-wildcard = the certificate names agencies by wildcard; it must name exactly one
gateway-certificate-not-one-agency = the certificate must name exactly one agency of the directory
gateway-certificate-not-the-claimed = the certificate presented is not the certificate of the agency named in x-himaya-agency (it must name <agency id>.agency.himaya)
gateway-agency-type-may-not-call = { $agency_type } agencies may not call { $rpc }
gateway-systems-only = { $rpc } is for agencies' systems, not for a person
gateway-role-may-not-call = your role may not call { $rpc }: it is for { $roles }
gateway-undecodable = the request is not a valid message of this call's type (protocol buffers): check that the client uses the hub's current .proto files
gateway-too-large = the request is larger than the { $max } bytes one call may carry (grpc.max_message_bytes): shorten the long text fields or the lists
gateway-busy = the hub is at its bound for this kind of call right now; send it again in { $retry_after_ms } ms with the same submission_id (nothing was stored)
gateway-timeout = the call did not finish within { $timeout_ms } ms (limits.request_timeout_ms) and was abandoned; send it again with the same submission_id (a referral the hub already took is answered as it was, never taken twice)
gateway-agency-suspended = the hub's administrators have suspended this agency's access: ask them to reactivate it
gateway-certificate-revoked = this certificate was revoked by the hub's administrators: enrol again or use your renewed certificate
