//! Hostile container files, built byte by byte: each is tiny on disk and declares something
//! huge (issue 11, part C). Shared by the crate's tests and `examples/hostile_files.rs`
//! (which measures peak memory), so it uses nothing but std.

/// The sync marker of every crafted file.
pub const MARKER: [u8; 16] = *b"himaya-crafted!!";

/// Avro's zig-zag varint long.
pub fn long(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7f) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Avro bytes or string: length, then the bytes.
pub fn bytes(out: &mut Vec<u8>, b: &[u8]) {
    long(out, b.len() as i64);
    out.extend_from_slice(b);
}

/// The five fields the import requires, as strings, then `extra` (a JSON schema) if any.
pub fn schema(extra: Option<&str>) -> String {
    let mut fields: Vec<String> = ["household_id", "member_id", "name_ar", "sex", "governorate"]
        .iter()
        .map(|n| format!(r#"{{"name":"{n}","type":"string"}}"#))
        .collect();
    if let Some(t) = extra {
        fields.push(format!(r#"{{"name":"extra","type":{t}}}"#));
    }
    format!(
        r#"{{"type":"record","name":"Member","namespace":"crafted","fields":[{}]}}"#,
        fields.join(",")
    )
}

/// Magic, the metadata map (schema and codec), the marker.
pub fn header(schema: &str, codec: &str) -> Vec<u8> {
    let mut out = b"Obj\x01".to_vec();
    long(&mut out, 2);
    bytes(&mut out, b"avro.schema");
    bytes(&mut out, schema.as_bytes());
    bytes(&mut out, b"avro.codec");
    bytes(&mut out, codec.as_bytes());
    long(&mut out, 0);
    out.extend_from_slice(&MARKER);
    out
}

/// A data block: row count, byte size, the bytes, the marker.
pub fn block(out: &mut Vec<u8>, rows: i64, data: &[u8]) {
    long(out, rows);
    bytes(out, data);
    out.extend_from_slice(&MARKER);
}

/// One row's five required strings (fictional values).
pub fn required_fields(out: &mut Vec<u8>) {
    for v in ["H-1", "M-1", "اسم", "female", "قنا"] {
        bytes(out, v.as_bytes());
    }
}

/// Item 1: the header's metadata map declares 2^28 entries (apache-avro 0.17 reserves a
/// hash map for all of them: 43 GB, and the process aborts).
pub fn header_map_entries() -> Vec<u8> {
    let mut out = b"Obj\x01".to_vec();
    long(&mut out, 1 << 28);
    bytes(&mut out, b"avro.schema");
    bytes(&mut out, schema(None).as_bytes());
    out.resize(857, 0);
    out
}

/// Item 1: one row whose extra field, an array of nulls, declares `items` items in one
/// array block (null items take no bytes, so the file stays tiny): 2^29 - 1 aborted
/// apache-avro, 2^24 - 1 made it reserve 0.9 GiB.
pub fn null_array(items: i64) -> Vec<u8> {
    let mut file = header(&schema(Some(r#"{"type":"array","items":"null"}"#)), "null");
    let mut row = Vec::new();
    required_fields(&mut row);
    long(&mut row, items);
    long(&mut row, 0);
    block(&mut file, 1, &row);
    file
}

/// Item 2: a block that declares `size` bytes (512 MiB in the report) in a tiny file.
pub fn declared_block(size: i64) -> Vec<u8> {
    let mut file = header(&schema(None), "null");
    long(&mut file, 1);
    long(&mut file, size);
    let mut row = Vec::new();
    required_fields(&mut row);
    file.extend_from_slice(&row);
    file.extend_from_slice(&MARKER);
    file
}

/// Item 2: a deflate block of one row whose data inflates to `zeros` zero bytes.
pub fn deflate_bomb(zeros: usize) -> Vec<u8> {
    let mut file = header(&schema(None), "deflate");
    block(&mut file, 1, &deflated_zeros(zeros));
    file
}

/// A row nested `depth` levels deep through a recursive extra field (one byte a level):
/// apache-avro decodes it recursively, so enough levels overflow the stack.
pub fn deep_nesting(depth: usize) -> Vec<u8> {
    let link =
        r#"{"type":"record","name":"Link","fields":[{"name":"next","type":["null","Link"]}]}"#;
    let mut file = header(&schema(Some(link)), "null");
    let mut row = Vec::new();
    required_fields(&mut row);
    row.resize(row.len() + depth, 2); // union branch 1: another Link
    row.push(0); // branch 0: null, the end
    block(&mut file, 1, &row);
    file
}

/// Raw deflate (RFC 1951) of `n` zero bytes in one block with its own Huffman codes: a
/// literal zero, then matches of 258 bytes at distance 1, two bits each (about 1000:1, as
/// a real compressor gets: 1 GiB of zeros in 1 MiB).
pub fn deflated_zeros(n: usize) -> Vec<u8> {
    let mut bits = Bits::default();
    bits.raw(1, 1); // BFINAL
    bits.raw(2, 2); // BTYPE 10: codes in the block
    bits.raw(286 - 257, 5); // literal/length codes up to 285 (length 258)
    bits.raw(2 - 1, 5); // two distance codes
    bits.raw(18 - 4, 4); // code-length code lengths given, in the RFC's order:
    for len in [0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2] {
        bits.raw(len, 3); // 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1
    }
    // Code-length codes: 2 -> "0", 1 -> "10", 18 (11 + 7 bits zeros) -> "11".
    let length = |b: &mut Bits, len: u64| match len {
        2 => b.code(0b0, 1),
        _ => b.code(0b10, 2),
    };
    let zeros = |b: &mut Bits, run: u64| {
        b.code(0b11, 2);
        b.raw(run - 11, 7);
    };
    length(&mut bits, 2); // literal 0
    zeros(&mut bits, 138); // literals 1..=138
    zeros(&mut bits, 117); // literals 139..=255
    length(&mut bits, 2); // end of block (256)
    zeros(&mut bits, 28); // lengths 257..=284
    length(&mut bits, 1); // length 285 (258 bytes)
    length(&mut bits, 1); // distance 0 (1 byte back)
    length(&mut bits, 1); // distance 1 (unused)
                          // So: 285 -> "0", literal 0 -> "10", end -> "11"; distance 0 -> "0".
    let mut left = n;
    if left > 0 {
        bits.code(0b10, 2);
        left -= 1;
    }
    while left >= 258 {
        bits.code(0b0, 1);
        bits.code(0b0, 1);
        left -= 258;
    }
    for _ in 0..left {
        bits.code(0b10, 2);
    }
    bits.code(0b11, 2);
    bits.finish()
}

/// Bits packed from the least significant end, as deflate wants.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn raw(&mut self, value: u64, len: u32) {
        self.acc |= value << self.n;
        self.n += len;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// Huffman codes go most significant bit first.
    fn code(&mut self, code: u64, len: u32) {
        let reversed = (0..len).fold(0, |r, i| r | (((code >> i) & 1) << (len - 1 - i)));
        self.raw(reversed, len);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}
