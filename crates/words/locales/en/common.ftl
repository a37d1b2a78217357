# Answers any service may give.

internal = internal error; the operators have been told
storage-unavailable = storage is unavailable; retry
storage-unavailable-resubmit = storage is unavailable; retry with the same submission_id
bus-unavailable = the message bus is unavailable; retry

# Readiness (/readyz on telemetry.metrics_listen): what keeps a process from taking work.
ready-ok = ready: PostgreSQL and RabbitMQ are reachable, migrations and queue declarations are done
ready-starting = still starting: { $components } (migrations and queue declarations not done yet)
ready-database-down = PostgreSQL cannot be reached (database.url): no work is taken until it answers again
ready-broker-down = RabbitMQ cannot be reached (bus.url): no work is taken until it answers again
