//! What can be learned about a container file without decoding its rows: its SHA-256
//! (the checkpoint's key), its header, and its blocks' declared rows and bytes, each held
//! to the limits (`limits.rs`) before anything is allocated for it; and so its row count
//! (for progress), from the block headers alone.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use apache_avro::Schema;
use sha2::{Digest, Sha256};

use super::limits::{
    Refusal, MAX_BLOCK_BYTES, MAX_BLOCK_ROWS, MAX_HEADER_BYTES, MAX_HEADER_ENTRIES,
};
use super::BulkError;

/// The file's SHA-256, hex: the same bytes resume the same import.
pub fn file_sha256(path: &Path) -> Result<String, BulkError> {
    let io = |e| BulkError::io(path, e);
    let mut file = File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Rows in the file, summed from block headers by seeking past each block's bytes:
/// milliseconds for millions of rows. `None` when the structure is broken or a part is
/// over the limits (the import then says where).
pub fn count_rows(path: &Path) -> Result<Option<u64>, BulkError> {
    match survey(path) {
        Err(e @ BulkError::Io { .. }) => Err(e),
        Err(_) => Ok(None),
        Ok(rows) => Ok(rows),
    }
}

/// The header and every block's declared rows and bytes checked against the limits
/// before any row is read, so such a file is refused whole: the rows in the file, or
/// `None` when its structure breaks off (a truncated file: the import reads up to there).
pub(crate) fn survey(path: &Path) -> Result<Option<u64>, BulkError> {
    let file = File::open(path).map_err(|e| BulkError::io(path, e))?;
    let len = file.metadata().map_err(|e| BulkError::io(path, e))?.len();
    walk(BufReader::new(file), len).map_err(|(stop, row)| stop.into_error(path, row))
}

/// [`survey`] over any seekable reader of `len` bytes; a stop comes with its row.
fn walk<R: Read + Seek>(r: R, len: u64) -> Result<Option<u64>, (Stop, u64)> {
    let mut r = Counted::new(r);
    let header = read_header(&mut r, len).map_err(|s| (s, 1))?;
    let mut rows = 0u64;
    for block in 1.. {
        let frame = match read_frame(&mut r, len, block) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(Stop::Corrupt) => return Ok(None),
            Err(stop) => return Err((stop, rows + 1)),
        };
        r.skip(frame.size).map_err(|e| (Stop::Io(e), rows + 1))?;
        let mut sync = [0u8; 16];
        if r.read_exact(&mut sync).is_err() || sync != header.marker {
            return Ok(None);
        }
        rows += frame.rows;
    }
    Ok(Some(rows))
}

/// Why reading a file stopped, before the import knows the row.
#[derive(Debug)]
pub(crate) enum Stop {
    /// No magic, or a header that breaks off.
    NotAContainer,
    Refused(Refusal),
    /// A block that breaks off, has the wrong sync marker, or holds rows that do not fit
    /// the schema or the block.
    Corrupt,
    /// Reading the file failed: not the file's fault.
    Io(io::Error),
}

impl Stop {
    /// As the import reports it, `row` being the first row not read.
    pub(crate) fn into_error(self, path: &Path, row: u64) -> BulkError {
        match self {
            Stop::NotAContainer => BulkError::NotAContainer,
            Stop::Refused(why) => BulkError::Refused(why),
            Stop::Corrupt => BulkError::Corrupt { row },
            Stop::Io(e) => BulkError::io(path, e),
        }
    }

    /// An early end of the file is `eof`'s fault; any other error is the reading's.
    pub(crate) fn from_io(e: io::Error, eof: Stop) -> Stop {
        match e.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => eof,
            _ => Stop::Io(e),
        }
    }
}

/// A reader that knows how far it has read, to hold declared lengths to what is left.
pub(crate) struct Counted<R> {
    inner: R,
    pos: u64,
}

impl<R> Counted<R> {
    pub(crate) fn new(inner: R) -> Counted<R> {
        Counted { inner, pos: 0 }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Counted<R> {
    /// Moves past `n` bytes the caller knows are in the file.
    fn skip(&mut self, n: u64) -> io::Result<()> {
        let by = i64::try_from(n).map_err(|_| broken())?;
        self.inner.seek(SeekFrom::Current(by))?;
        self.pos += n;
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Null,
    Deflate,
}

/// What the import takes from a file's header.
pub(crate) struct Header {
    pub(crate) schema: Schema,
    /// The schema as written, for the header handed to apache-avro.
    pub(crate) schema_json: Vec<u8>,
    pub(crate) codec: Codec,
    pub(crate) marker: [u8; 16],
}

/// Reads the header within [`MAX_HEADER_ENTRIES`] and [`MAX_HEADER_BYTES`], and every
/// declared length within what is left of the file (`len` bytes), before reading it.
pub(crate) fn read_header<R: Read>(r: &mut Counted<R>, len: u64) -> Result<Header, Stop> {
    let eof = |e| Stop::from_io(e, Stop::NotAContainer);
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic).map_err(eof)?;
    if magic != *b"Obj\x01" {
        return Err(Stop::NotAContainer);
    }
    // The metadata: an Avro map of bytes, in blocks; a negative count carries a size.
    let (mut entries, mut schema_json, mut codec) = (0u64, None, None);
    loop {
        let count = read_long(r).map_err(eof)?;
        if count == 0 {
            break;
        }
        if count < 0 {
            read_long(r).map_err(eof)?;
        }
        entries = entries.saturating_add(count.unsigned_abs());
        if entries > MAX_HEADER_ENTRIES {
            return Err(Stop::Refused(Refusal::HeaderEntries {
                declared: entries,
                max: MAX_HEADER_ENTRIES,
            }));
        }
        for _ in 0..count.unsigned_abs() {
            let key = header_bytes(r, len)?;
            let value = header_bytes(r, len)?;
            match key.as_slice() {
                b"avro.schema" => schema_json = Some(value),
                b"avro.codec" => codec = Some(value),
                _ => {}
            }
        }
    }
    let mut marker = [0u8; 16];
    r.read_exact(&mut marker).map_err(eof)?;
    let codec = match codec.as_deref() {
        None | Some(b"null") => Codec::Null,
        Some(b"deflate") => Codec::Deflate,
        Some(_) => return Err(Stop::Refused(Refusal::Codec)),
    };
    let schema_json = schema_json.ok_or(Stop::Refused(Refusal::Schema))?;
    // The parser's message is dropped: it may quote the schema.
    let schema = std::str::from_utf8(&schema_json)
        .ok()
        .and_then(|text| Schema::parse_str(text).ok())
        .ok_or(Stop::Refused(Refusal::Schema))?;
    Ok(Header {
        schema,
        schema_json,
        codec,
        marker,
    })
}

/// One metadata key or value, its declared length checked before anything is allocated.
fn header_bytes<R: Read>(r: &mut Counted<R>, len: u64) -> Result<Vec<u8>, Stop> {
    let eof = |e| Stop::from_io(e, Stop::NotAContainer);
    let n = u64::try_from(read_long(r).map_err(eof)?).map_err(|_| Stop::NotAContainer)?;
    let end = r.pos.saturating_add(n);
    if end > MAX_HEADER_BYTES {
        return Err(Stop::Refused(Refusal::HeaderBytes {
            max: MAX_HEADER_BYTES,
        }));
    }
    if end > len {
        return Err(Stop::NotAContainer);
    }
    let mut buf = vec![0u8; n as usize];
    r.read_exact(&mut buf).map_err(eof)?;
    Ok(buf)
}

/// A data block's declared rows and bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame {
    pub(crate) rows: u64,
    pub(crate) size: u64,
}

/// The next block's frame, checked against [`MAX_BLOCK_ROWS`] and [`MAX_BLOCK_BYTES`] and
/// against what is left of the file (`len` bytes); `None` at the end of the file.
pub(crate) fn read_frame<R: Read>(
    r: &mut Counted<R>,
    len: u64,
    block: u64,
) -> Result<Option<Frame>, Stop> {
    let start = r.pos;
    let rows = match read_long(r) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof && r.pos == start => return Ok(None),
        Err(e) => return Err(Stop::from_io(e, Stop::Corrupt)),
    };
    let size = read_long(r).map_err(|e| Stop::from_io(e, Stop::Corrupt))?;
    let (Ok(rows), Ok(size)) = (u64::try_from(rows), u64::try_from(size)) else {
        return Err(Stop::Corrupt);
    };
    if rows > MAX_BLOCK_ROWS {
        return Err(Stop::Refused(Refusal::BlockRows {
            block,
            declared: rows,
            max: MAX_BLOCK_ROWS,
        }));
    }
    if size > MAX_BLOCK_BYTES {
        return Err(Stop::Refused(Refusal::BlockBytes {
            block,
            declared: size,
            max: MAX_BLOCK_BYTES,
        }));
    }
    // A block of no rows ends the reading in apache-avro (and Java): the rows after it
    // would be silently dropped. Writers never write one.
    if rows == 0 || r.pos + size + 16 > len {
        return Err(Stop::Corrupt);
    }
    Ok(Some(Frame { rows, size }))
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "not a well-formed container")
}

/// Avro's zig-zag varint long.
pub(crate) fn read_long<R: Read>(r: &mut R) -> io::Result<i64> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        let mut b = [0u8; 1];
        r.read_exact(&mut b)?;
        value |= u64::from(b[0] & 0x7f) << shift;
        if b[0] & 0x80 == 0 {
            return Ok((value >> 1) as i64 ^ -((value & 1) as i64));
        }
    }
    Err(broken())
}

/// Avro's zig-zag varint long, written.
pub(crate) fn write_long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use apache_avro::{types::Value, Schema, Writer};

    use super::*;

    #[test]
    fn rows_are_counted_from_block_headers() {
        let schema = Schema::parse_str(r#""long""#).unwrap();
        let mut w = Writer::builder()
            .schema(&schema)
            .writer(Vec::new())
            .block_size(64)
            .build()
            .unwrap();
        for i in 0..1000i64 {
            w.append_value(Value::Long(i)).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        let len = bytes.len() as u64;
        assert_eq!(walk(Cursor::new(&bytes), len).unwrap(), Some(1000));
        let cut = &bytes[..bytes.len() - 5];
        let cut_len = cut.len() as u64;
        assert_eq!(walk(Cursor::new(cut), cut_len).unwrap(), None);
        assert!(matches!(
            walk(Cursor::new(b"nope".as_slice()), 4),
            Err((Stop::NotAContainer, 1))
        ));
    }

    #[test]
    fn zigzag_longs_decode() {
        for (bytes, v) in [
            (&[0x00][..], 0),
            (&[0x01], -1),
            (&[0x02], 1),
            (&[0x80, 0x01], 64),
        ] {
            assert_eq!(read_long(&mut Cursor::new(bytes)).unwrap(), v);
        }
    }
}
