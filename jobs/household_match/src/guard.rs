//! What apache-avro's `Reader` is given instead of the file: the same rows, re-framed one
//! checked block at a time. apache-avro 0.17 believed every length a file declares
//! (header entries, block bytes, inflated bytes, array items) and allocated it at once,
//! aborting the process when it could not; 0.22 holds each to its process-wide
//! allocation limit, but still allocates up to it on a file's word. Here the file's header is read within the limits
//! and replaced by one of our own (its schema, no codec, no other metadata); each block is
//! read within the limits, inflated here with a cap, and its rows walked against the
//! schema (`datum.rs`) before it is handed on. apache-avro then decodes only blocks whose
//! every allocation is known to be small.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use apache_avro::Schema;

use super::container::{read_frame, read_header, write_long, Codec, Counted, Header, Stop};
use super::datum::check_rows;
use super::limits::{Refusal, MAX_BLOCK_BYTES};
use super::BulkError;

/// The file, as a stream of checked blocks behind a header of our own (`impl Read`).
pub(crate) struct Guarded {
    file: Counted<BufReader<File>>,
    /// The file's length when opened: no declared length may reach past it.
    len: u64,
    header: Header,
    /// Blocks handed on so far, and the rows in them.
    blocks: u64,
    rows: u64,
    /// The current block as stored, and inflated (each kept for the next block).
    stored: Vec<u8>,
    inflated: Vec<u8>,
    /// What is being handed on: `head` (our header, or the block's row count and size),
    /// then `body` (the block's rows, uncompressed), then the sync marker.
    head: Vec<u8>,
    body: Body,
    part: Part,
    pos: usize,
    /// Why the stream stopped early; apache-avro only sees an I/O error.
    stop: Option<Stop>,
    ended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    None,
    Stored,
    /// Inflated into `inflated`, this many bytes of it.
    Inflated(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Head,
    Body,
    Marker,
}

impl Guarded {
    /// Opens `path` and reads its header within the limits.
    pub(crate) fn open(path: &Path) -> Result<Guarded, BulkError> {
        let file = File::open(path).map_err(|e| BulkError::io(path, e))?;
        let len = file.metadata().map_err(|e| BulkError::io(path, e))?.len();
        let mut file = Counted::new(BufReader::with_capacity(1 << 16, file));
        let header = read_header(&mut file, len).map_err(|s| s.into_error(path, 1))?;
        // Blocks are handed on inflated, so the codec is null; the file's other metadata
        // is not needed.
        let mut head = b"Obj\x01".to_vec();
        write_long(&mut head, 2);
        for (key, value) in [
            (&b"avro.schema"[..], header.schema_json.as_slice()),
            (b"avro.codec", b"null"),
        ] {
            write_long(&mut head, key.len() as i64);
            head.extend_from_slice(key);
            write_long(&mut head, value.len() as i64);
            head.extend_from_slice(value);
        }
        write_long(&mut head, 0);
        Ok(Guarded {
            file,
            len,
            header,
            blocks: 0,
            rows: 0,
            stored: Vec::new(),
            inflated: Vec::new(),
            head,
            body: Body::None,
            part: Part::Head,
            pos: 0,
            stop: None,
            ended: false,
        })
    }

    /// The file's writer schema.
    pub(crate) fn schema(&self) -> &Schema {
        &self.header.schema
    }

    /// Why apache-avro's reading failed after `rows_read` rows: a block refused here (the
    /// rows before it were all handed on), or else the row apache-avro could not decode.
    pub(crate) fn failure(&mut self, path: &Path, rows_read: u64) -> BulkError {
        match self.stop.take() {
            Some(stop) => stop.into_error(path, rows_read + 1),
            None => BulkError::Corrupt { row: rows_read + 1 },
        }
    }

    fn pending(&self) -> &[u8] {
        let part: &[u8] = match self.part {
            Part::Head => &self.head,
            Part::Body => match self.body {
                Body::None => &[],
                Body::Stored => &self.stored,
                Body::Inflated(n) => &self.inflated[..n],
            },
            Part::Marker => &self.header.marker,
        };
        part.get(self.pos..).unwrap_or_default()
    }

    /// Reads, inflates and checks the next block and makes it the one handed on; `false`
    /// at the end of the file.
    fn next_block(&mut self) -> Result<bool, Stop> {
        let block = self.blocks + 1;
        let Some(frame) = read_frame(&mut self.file, self.len, block)? else {
            return Ok(false);
        };
        let corrupt = |e| Stop::from_io(e, Stop::Corrupt);
        // Within MAX_BLOCK_BYTES and what is left of the file (`read_frame`).
        self.stored.resize(frame.size as usize, 0);
        self.file.read_exact(&mut self.stored).map_err(corrupt)?;
        let mut marker = [0u8; 16];
        self.file.read_exact(&mut marker).map_err(corrupt)?;
        if marker != self.header.marker {
            return Err(Stop::Corrupt);
        }
        self.body = match self.header.codec {
            Codec::Null => Body::Stored,
            Codec::Deflate => Body::Inflated(inflate(&self.stored, &mut self.inflated, block)?),
        };
        let body = match self.body {
            Body::Inflated(n) => &self.inflated[..n],
            _ => &self.stored,
        };
        check_rows(&self.header.schema, body, frame.rows, block, self.rows)?;
        self.head.clear();
        write_long(&mut self.head, frame.rows as i64);
        write_long(&mut self.head, body.len() as i64);
        (self.part, self.pos) = (Part::Head, 0);
        self.blocks = block;
        self.rows += frame.rows;
        Ok(true)
    }
}

/// Inflates a deflate block into `out`, refusing it past [`MAX_BLOCK_BYTES`]: `out` is a
/// buffer of a fixed size that the inflater never grows. It starts at 64 KiB (a block as
/// writers cut them) and is doubled, the block inflated again, only as far as a block
/// needs, up to the limit; it is kept at that size for the next blocks. How many bytes
/// the block inflated to.
fn inflate(stored: &[u8], out: &mut Vec<u8>, block: u64) -> Result<usize, Stop> {
    use miniz_oxide::inflate::{decompress_slice_iter_to_slice, TINFLStatus};
    const FIRST: usize = 64 * 1024;
    let max = MAX_BLOCK_BYTES as usize;
    let mut size = out.len().clamp(FIRST.min(max), max);
    loop {
        out.resize(size, 0);
        match decompress_slice_iter_to_slice(out, std::iter::once(stored), false, false) {
            Ok(n) => return Ok(n),
            Err(TINFLStatus::HasMoreOutput) if size < max => size = (size * 2).min(max),
            Err(TINFLStatus::HasMoreOutput) => {
                return Err(Stop::Refused(Refusal::Inflated {
                    block,
                    max: MAX_BLOCK_BYTES,
                }))
            }
            Err(_) => return Err(Stop::Corrupt),
        }
    }
}

impl Read for Guarded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            let pending = self.pending();
            if !pending.is_empty() {
                let n = pending.len().min(buf.len());
                buf[..n].copy_from_slice(&pending[..n]);
                self.pos += n;
                return Ok(n);
            }
            match self.part {
                Part::Head => (self.part, self.pos) = (Part::Body, 0),
                Part::Body => (self.part, self.pos) = (Part::Marker, 0),
                Part::Marker if self.ended => return Ok(0),
                Part::Marker => match self.next_block() {
                    Ok(true) => {}
                    Ok(false) => {
                        self.ended = true;
                        return Ok(0);
                    }
                    // Never an early end of file: apache-avro would take that for the end
                    // of the rows and the import would finish, short.
                    Err(stop) => {
                        self.stop = Some(stop);
                        self.ended = true;
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "the block was not handed on",
                        ));
                    }
                },
            }
        }
    }
}
