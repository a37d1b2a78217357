-- The children of open cases, for the bulk household match (jobs/household_match,
-- `himaya cash-assistance import`). Schema: cases (search_path).
--
-- A PUBLISHED CONTRACT of the cases service: the one thing outside this service that may
-- read its data in the database. Its name, columns, their types and meaning change only
-- with a new view version (`open_children_v2` beside this one, this one dropped once no
-- reader is left); the tables below it may change freely, this view's definition being
-- rewritten to keep its columns. A reader is granted SELECT on this view alone, never
-- on the tables (a view reads them with its owner's rights).
--
-- Open means a child protection case is being worked: referred or registered. Every
-- column but case_id is the record's own text, NULL where the record has none:
--   case_id        TEXT  the case
--   name_ar        TEXT  the child's name as given (Arabic script)
--   name_latin     TEXT  its transliteration
--   date_of_birth  TEXT  YYYY-MM-DD
--   estimated_age  TEXT  whole years, where the birth date is unknown
--   sex            TEXT  female | male | not_stated
--   governorate    TEXT  the child's governorate
--   national_id    TEXT  the national number: a national id document's, else the
--                        14-digit number an Egyptian birth certificate carries
CREATE VIEW open_children AS
SELECT case_id,
       record #>> '{child,name,as_given}'          AS name_ar,
       record #>> '{child,name,transliteration}'   AS name_latin,
       record #>> '{child,date_of_birth}'          AS date_of_birth,
       record #>> '{child,estimated_age_years}'    AS estimated_age,
       record #>> '{child,sex}'                    AS sex,
       record #>> '{child,governorate}'            AS governorate,
       (SELECT d ->> 'number'
          FROM jsonb_array_elements(CASE jsonb_typeof(record #> '{child,identity_documents}')
                                    WHEN 'array' THEN record #> '{child,identity_documents}'
                                    ELSE '[]'::jsonb END) AS d
         -- Egyptian birth certificates carry the 14-digit national number.
         WHERE d ->> 'kind' = 'national_id'
            OR (d ->> 'kind' = 'birth_certificate' AND d ->> 'number' ~ '^[0-9]{14}$')
         ORDER BY (d ->> 'kind' = 'national_id') DESC
         LIMIT 1)                                  AS national_id
  FROM cases
 WHERE status IN ('referred', 'registered');

COMMENT ON VIEW open_children IS
    'Published contract of the cases service (children of open cases, for the household match job): columns change only with a new view version.';
