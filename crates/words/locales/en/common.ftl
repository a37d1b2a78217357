# Answers any service may give.

internal = internal error; the operators have been told
storage-unavailable = storage is unavailable; retry
storage-unavailable-resubmit = storage is unavailable; retry with the same submission_id
bus-unavailable = the message bus is unavailable; retry
