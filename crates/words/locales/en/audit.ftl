# The disclosure log.

audit-auditors-only = the disclosure log is read by auditors only
audit-own-entries-only = this agency reads only the entries whose recipient is itself: leave the recipient empty or give your own agency
