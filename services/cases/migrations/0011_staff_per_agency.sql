-- Staff ids are each agency's own (issue 11): the same id (`sw-1`) may exist in two
-- directorates, and one directorate can neither learn, reserve nor use another's ids.
-- Every lookup of a staff member is by (agency_id, staff_id).

ALTER TABLE staff DROP CONSTRAINT staff_supervisor_id_fkey;
ALTER TABLE staff DROP CONSTRAINT staff_pkey;
ALTER TABLE staff ADD PRIMARY KEY (agency_id, staff_id);
-- A caseworker's supervisor is of the caseworker's own agency.
ALTER TABLE staff ADD CONSTRAINT staff_supervisor_fkey
    FOREIGN KEY (agency_id, supervisor_id) REFERENCES staff (agency_id, staff_id);

-- The agency whose caseworker a case is assigned to, written with the assignment. A
-- column rather than derived: a case does not store its owner (ownership follows the
-- child's governorate and the agencies' settings, and a ministry covering everywhere
-- shares a directorate's cases), so the joins to staff (caseloads, escalations to the
-- supervisor) need the agency that made the assignment. Left as it was when the
-- assignment is cleared: with caseworker_id NULL it matches no one.
ALTER TABLE cases ADD COLUMN caseworker_agency TEXT;
-- Until now staff ids were unique across agencies: each assigned case has one match.
UPDATE cases c SET caseworker_agency = s.agency_id
  FROM staff s
 WHERE s.staff_id = c.caseworker_id;
ALTER TABLE cases ADD CONSTRAINT cases_caseworker_fkey
    FOREIGN KEY (caseworker_agency, caseworker_id) REFERENCES staff (agency_id, staff_id);

DROP INDEX cases_caseworker_open;
CREATE INDEX cases_caseworker_open ON cases (caseworker_agency, caseworker_id)
    WHERE status = 'registered';
