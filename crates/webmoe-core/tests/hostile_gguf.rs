//! Hostile GGUF headers: sizes that lie (sparse files, servers claiming huge files), metadata that would
//! be large in memory, duplicate keys and tensor names, overlapping tensors. Each is a clear error from
//! the header parser, before anything is allocated by the lying number.

use webmoe_core::error::GgufError;
use webmoe_core::gguf::{parse_header, HeaderParse};

/// A GGUF header written by hand (the writer cannot express duplicates).
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn new(tensors: u64, kvs: u64) -> Self {
        let mut r = Raw::default();
        r.u32(0x4655_4747).u32(3).u64(tensors).u64(kvs);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    /// A u32 metadata entry.
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(4).u32(v)
    }
    /// An F32 tensor of `n` elements at `offset`.
    fn tensor(&mut self, name: &str, n: u64, offset: u64) -> &mut Self {
        self.str(name).u32(1).u64(n).u32(0).u64(offset)
    }
}

fn parse(bytes: &[u8], file_size: u64) -> Result<HeaderParse, GgufError> {
    parse_header(bytes, file_size)
}

fn err(bytes: &[u8], file_size: u64) -> GgufError {
    match parse(bytes, file_size) {
        Err(e) => e,
        Ok(HeaderParse::NeedBytes(n)) => panic!("asked for {n} bytes instead of failing"),
        Ok(HeaderParse::Done(_)) => panic!("accepted"),
    }
}

#[test]
fn a_sparse_huge_file_with_a_huge_array_or_string_is_refused_without_reading_it() {
    const TIB: u64 = 1 << 40;
    // A 2^36-element u8 array in a "1 TiB" file: the count fits the file but no model needs it.
    let mut r = Raw::new(0, 1);
    r.str("junk").u32(9).u32(0).u64(1 << 36);
    assert!(matches!(err(&r.0, TIB), GgufError::TooManyElements { .. }));
    // A 2^36-byte string.
    let mut r = Raw::new(0, 1);
    r.str("junk").u32(8).u64(1 << 36);
    assert!(matches!(err(&r.0, TIB), GgufError::HeaderTooLarge { .. }));
    // A server claiming a 2^62-byte file: the same counts are refused, not allocated.
    let mut r = Raw::new(0, 1);
    r.str("junk").u32(9).u32(4).u64(1 << 50);
    assert!(matches!(
        err(&r.0, 1 << 62),
        GgufError::TooManyElements { .. }
    ));
}

#[test]
fn a_header_never_grows_past_the_limit() {
    // 100 million tensors of a "1 TiB" file would need gigabytes of tensor table.
    let mut r = Raw::new(100_000_000, 0);
    r.tensor("t", 8, 0);
    let e = err(&r.0, 1 << 40);
    assert!(matches!(e, GgufError::TooManyElements { .. }), "{e}");
    // A tensor name that ends past the header limit: refused instead of asking for those bytes.
    let mut r = Raw::new(1, 0);
    r.u64(webmoe_core::gguf::MAX_HEADER_BYTES - 10);
    let e = err(&r.0, 1 << 40);
    assert!(matches!(e, GgufError::HeaderTooLarge { .. }), "{e}");
}

#[test]
fn a_big_bool_array_is_refused_and_bools_stay_compact() {
    // 40 M booleans: over the element budget.
    let mut r = Raw::new(0, 1);
    r.str("flags").u32(9).u32(7).u64(40_000_000);
    r.0.resize(r.0.len() + 40_000_000, 1);
    let len = r.0.len() as u64;
    assert!(matches!(err(&r.0, len), GgufError::TooManyElements { .. }));
    // 1 M booleans parse, as one number each.
    let mut r = Raw::new(0, 1);
    r.str("flags").u32(9).u32(7).u64(1_000_000);
    r.0.resize(r.0.len() + 1_000_000, 1);
    let len = r.0.len() as u64;
    let Ok(HeaderParse::Done(h)) = parse(&r.0, len) else {
        panic!("parse")
    };
    assert_eq!(
        h.get("flags").unwrap().as_num_array().unwrap().len(),
        1_000_000
    );
}

#[test]
fn duplicate_keys_and_tensors_and_overlaps_are_refused() {
    let mut r = Raw::new(0, 2);
    r.kv_u32("a.b", 1).kv_u32("a.b", 2);
    let len = r.0.len() as u64;
    assert!(matches!(err(&r.0, len), GgufError::DuplicateKey { key } if key == "a.b"));

    let with_data = |r: &mut Raw, data: usize| {
        let pad = r.0.len().div_ceil(32) * 32;
        r.0.resize(pad + data, 0);
        r.0.len() as u64
    };
    let mut r = Raw::new(2, 0);
    r.tensor("w", 8, 0).tensor("w", 8, 32);
    let len = with_data(&mut r, 64);
    assert!(matches!(err(&r.0, len), GgufError::DuplicateTensor { name } if name == "w"));

    let mut r = Raw::new(2, 0);
    r.tensor("a", 16, 0).tensor("b", 8, 32); // a spans bytes 0..64, b starts at 32
    let len = with_data(&mut r, 96);
    assert!(matches!(
        err(&r.0, len),
        GgufError::OverlappingTensors { .. }
    ));

    let mut r = Raw::new(2, 0);
    r.tensor("a", 8, 0).tensor("b", 8, 32);
    let len = with_data(&mut r, 64);
    assert!(matches!(parse(&r.0, len), Ok(HeaderParse::Done(_))));
}
