-- The agency's own id for a case it sent the hub (Primero's record id), so that the
-- hub's later messages about that case (feedback, withdrawal notices) can name the
-- agency's record: Primero's flags address records by their id.
ALTER TABLE inbound_messages ADD COLUMN agency_record TEXT;
CREATE INDEX inbound_messages_case ON inbound_messages (agency_id, (answer->>'case_ref'))
    WHERE agency_record IS NOT NULL;
-- The records the hub made at an agency, by case (a delivery's agency_reference).
CREATE INDEX deliveries_agency_case ON deliveries (agency_id, case_id)
    WHERE outcome = 'delivered' AND agency_reference IS NOT NULL;
-- Cases Primero sent before this column existed: the record id is in the message id
-- (`primero:<record id>:<version time>`).
UPDATE inbound_messages SET agency_record = split_part(message_id, ':', 2)
 WHERE route = 'primero_case' AND message_id LIKE 'primero:%:%' AND agency_record IS NULL;
