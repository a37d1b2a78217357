-- Duplicate search by blocks instead of a nearest-neighbour walk of a trigram index.
--
-- A child falls in a few blocks: one per pair of the first four words of its normalized
-- name, each word reduced to its consonants, hashed to 32 bits
-- (`himaya_record::matching::name_blocks`), for each year of its birth-year range. A
-- search reads the blocks of the sought name over the birth-year window from one b-tree,
-- keeps the 50 children sharing the most blocks (same place and nearest birth year
-- first) and scores those in Rust. Measured at 1,000,000 children: see the README
-- ("Measured") and docs/decisions.md. The GiST trigram index it replaces cost every
-- intake a GiST insert and took 178 ms (p50) per search at a million.
ALTER TABLE children ADD COLUMN child_no BIGINT GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX children_child_no ON children (child_no);

-- No personal data: hashes of name parts, a birth year, a hashed governorate.
CREATE TABLE child_blocks (
    block      INT      NOT NULL,
    birth_year SMALLINT NOT NULL,
    child_no   BIGINT   NOT NULL REFERENCES children (child_no) ON DELETE CASCADE,
    place      INT      NOT NULL,
    PRIMARY KEY (block, birth_year, child_no) INCLUDE (place)
);
-- For re-indexing one child (its name corrected) and the cascade from `children`.
CREATE INDEX child_blocks_child ON child_blocks (child_no);

DROP INDEX children_name_trgm;
