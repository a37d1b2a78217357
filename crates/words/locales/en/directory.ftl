# The directory: agencies and the service map.

directory-agency-not-found = no agency `{ $agency_id }` in the directory
directory-service-not-found = no service { $service_id } on the map
directory-service-not-yours = service { $service_id } belongs to `{ $agency_id }`; an agency changes only its own services
directory-service-stale = service { $service_id } is at version { $current }, not { $expected }: reload it and try again
directory-service-changed = service { $service_id } changed meanwhile: reload it and try again
directory-service-removed = service { $service_id } is already off the map
directory-not-administrator = only the hub's administrators (a social-affairs agency covering every governorate) may change the directory's agencies
directory-agency-exists = agency `{ $agency_id }` is already in the directory at version { $current }: to change it, send the version you last saw as expected_version
directory-agency-stale = agency `{ $agency_id }` is at version { $current }, not { $expected }: reload it and try again
directory-agency-gone = agency `{ $agency_id }` was removed from the directory: to bring it back, add it again with PutAgency (expected_version { $current })
directory-agency-self = an administrator cannot suspend or remove its own agency: another administrator must
enrolment-no-issuer = this hub does not issue certificates (grpc.issuer is not set): your certificate comes from the hub's operators
enrolment-code-refused = the enrolment code is not valid for this agency: it may be mistyped, used, expired or replaced by a newer one; ask the hub's administrators for a new code
certificate-not-found = no certificate with this fingerprint was issued by the hub (ListCertificates lists an agency's)
