//! How large a household file's parts may be, and why a file is refused when a part is
//! larger. Every size a file declares (header entries, block rows and bytes, inflated
//! bytes, array items) is checked against these before anything is allocated for it: a
//! file of a few hundred bytes used to make the import allocate gigabytes and abort.
//!
//! The limits fit the real row schema (`proto/avro/cash_household_member.avsc`: ten
//! fields, a row about 140 bytes encoded, about 1.7 KiB decoded) with wide margins; a
//! programme's file exceeding one would be refused naming the limit, and re-written with
//! smaller blocks.

/// The header's metadata map. Our schema's JSON is 2.2 KiB; 256 KiB leaves room for a
/// programme's own, documented schema and bounds what the schema parser is handed.
pub const MAX_HEADER_BYTES: u64 = 256 * 1024;

/// Writers put two entries (schema, codec), sometimes a few of their own.
pub const MAX_HEADER_ENTRIES: u64 = 64;

/// A data block, as stored and once inflated. Writers flush blocks of 16 KB (apache-avro)
/// to 64 KB (Java's default sync interval, and `generate`); 4 MiB is 64 times that, and
/// bounds the block's copies the import holds at once (stored, inflated, the decoder's)
/// to 12 MiB.
pub const MAX_BLOCK_BYTES: u64 = 4 * 1024 * 1024;

/// Rows in a block: every row takes at least one byte, so more rows than a block may hold
/// bytes cannot be true, and is refused before the block is read.
pub const MAX_BLOCK_ROWS: u64 = MAX_BLOCK_BYTES;

/// What decoding one row may allocate, as estimated before it is decoded (apache-avro
/// `Value`s, field names, text). One of our rows is about 1.7 KiB; 1 MiB is 600 times that,
/// and an array of a million nulls (no bytes each, 56 bytes each decoded) is refused.
pub const MAX_ROW_DECODED_BYTES: u64 = 1024 * 1024;

/// What decoding all of a block's rows may allocate in turn (each row is dropped before the
/// next): a bound on the time a block takes, not on memory. Our rows decode to about 13
/// times their encoded size; 64 times the largest block leaves room for schemas of many
/// small numbers.
pub const MAX_BLOCK_DECODED_BYTES: u64 = 64 * MAX_BLOCK_BYTES;

/// Nesting of records, unions, arrays and maps in a row (ours is three deep). apache-avro
/// decodes recursively: a recursive type nested a million times overflows the stack.
pub const MAX_ROW_DEPTH: u32 = 32;

/// apache-avro's own limit on any one allocation while decoding (process-wide, and only the
/// first setting counts). It only ever decodes blocks checked against the limits above, so
/// nothing it rightly allocates is larger than a block: its 512 MiB default would let a
/// single declared length take 512 MiB. Also a backstop if a check here were missed.
pub const AVRO_MAX_ALLOCATION_BYTES: usize = MAX_BLOCK_BYTES as usize;

/// Sets apache-avro's allocation limit to [`AVRO_MAX_ALLOCATION_BYTES`] and returns the
/// limit in force: a larger one means something in this process decoded Avro first (the
/// import's own checks still bound its memory).
pub fn limit_avro_allocations() -> usize {
    let in_force = apache_avro::util::max_allocation_bytes(AVRO_MAX_ALLOCATION_BYTES);
    if in_force > AVRO_MAX_ALLOCATION_BYTES {
        tracing::warn!(
            in_force,
            wanted = AVRO_MAX_ALLOCATION_BYTES,
            "apache-avro's allocation limit was set earlier in this process"
        );
    }
    in_force
}

/// Why a file is refused: the part and the limit, with the block (1-based) and row where it
/// was found. Never a value from the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the header's metadata declares {declared} entries; the limit is {max}")]
    HeaderEntries { declared: u64, max: u64 },
    #[error("the header's metadata is larger than the limit of {max} bytes")]
    HeaderBytes { max: u64 },
    #[error("the header has no schema, or one that does not parse")]
    Schema,
    #[error("the header names a codec other than null and deflate")]
    Codec,
    #[error("block {block} declares {declared} rows; the limit is {max}")]
    BlockRows { block: u64, declared: u64, max: u64 },
    #[error("block {block} declares {declared} bytes; the limit is {max}")]
    BlockBytes { block: u64, declared: u64, max: u64 },
    #[error("block {block} inflates to more than the limit of {max} bytes")]
    Inflated { block: u64, max: u64 },
    #[error(
        "block {block}'s rows would take more than the limit of {max} bytes decoded, row by row"
    )]
    BlockDecoded { block: u64, max: u64 },
    #[error("row {row} (block {block}) would take more than the limit of {max} bytes decoded (array items, map entries, fields, text)")]
    RowSize { block: u64, row: u64, max: u64 },
    #[error("row {row} (block {block}) nests deeper than the limit of {max} levels")]
    RowDepth { block: u64, row: u64, max: u32 },
}

impl Refusal {
    /// The short reason recorded with the failed import (`bulk_imports.failed_reason`).
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::HeaderEntries { .. } => "header_entries",
            Refusal::HeaderBytes { .. } => "header_bytes",
            Refusal::Schema => "header_schema",
            Refusal::Codec => "codec",
            Refusal::BlockRows { .. } => "block_rows",
            Refusal::BlockBytes { .. } => "block_bytes",
            Refusal::Inflated { .. } => "block_inflated",
            Refusal::BlockDecoded { .. } => "block_decoded",
            Refusal::RowSize { .. } => "row_size",
            Refusal::RowDepth { .. } => "row_depth",
        }
    }
}
