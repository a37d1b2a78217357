# The directory: agencies and the service map.

directory-agency-not-found = no agency `{ $agency_id }` in the directory
directory-service-not-found = no service { $service_id } on the map
directory-service-not-yours = service { $service_id } belongs to `{ $agency_id }`; an agency changes only its own services
directory-service-stale = service { $service_id } is at version { $current }, not { $expected }: reload it and try again
directory-service-changed = service { $service_id } changed meanwhile: reload it and try again
directory-service-removed = service { $service_id } is already off the map
