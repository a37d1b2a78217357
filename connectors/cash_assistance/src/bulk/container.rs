//! What can be learned about a container file without decoding its rows: its SHA-256
//! (the checkpoint's key) and its row count (for progress), from the block headers alone.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

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
/// milliseconds for millions of rows. `None` when the structure is broken (the import then
/// finds and reports the exact row).
pub fn count_rows(path: &Path) -> Result<Option<u64>, BulkError> {
    let file = File::open(path).map_err(|e| BulkError::io(path, e))?;
    let len = file.metadata().map_err(|e| BulkError::io(path, e))?.len();
    Ok(walk(BufReader::new(file), len).ok())
}

fn walk<R: Read + Seek>(mut r: R, len: u64) -> io::Result<u64> {
    let mut magic = [0u8; 4];
    r.read_exact(&mut magic)?;
    if magic != *b"Obj\x01" {
        return Err(broken());
    }
    // Header metadata: an Avro map of bytes, in blocks; a negative count carries a size.
    loop {
        let count = read_long(&mut r)?;
        if count == 0 {
            break;
        }
        if count < 0 {
            read_long(&mut r)?;
        }
        for _ in 0..count.unsigned_abs() {
            for _ in 0..2 {
                let n = read_long(&mut r)?;
                skip(&mut r, n)?;
            }
        }
    }
    let mut marker = [0u8; 16];
    r.read_exact(&mut marker)?;
    let mut rows = 0u64;
    loop {
        let count = match read_long(&mut r) {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(rows),
            Err(e) => return Err(e),
        };
        let size = read_long(&mut r)?;
        if count < 0 || size < 0 || size as u64 > len {
            return Err(broken());
        }
        skip(&mut r, size)?;
        let mut sync = [0u8; 16];
        r.read_exact(&mut sync)?;
        if sync != marker {
            return Err(broken());
        }
        rows += count as u64;
    }
}

fn broken() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "not a well-formed container")
}

fn skip<R: Seek>(r: &mut R, n: i64) -> io::Result<()> {
    if n < 0 {
        return Err(broken());
    }
    r.seek(SeekFrom::Current(n))?;
    Ok(())
}

/// Avro's zig-zag varint long.
fn read_long<R: Read>(r: &mut R) -> io::Result<i64> {
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
            .build();
        for i in 0..1000i64 {
            w.append(Value::Long(i)).unwrap();
        }
        let bytes = w.into_inner().unwrap();
        let len = bytes.len() as u64;
        assert_eq!(walk(Cursor::new(&bytes), len).unwrap(), 1000);
        let cut = &bytes[..bytes.len() - 5];
        assert!(walk(Cursor::new(cut), len).is_err());
        assert!(walk(Cursor::new(b"nope".as_slice()), 4).is_err());
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
