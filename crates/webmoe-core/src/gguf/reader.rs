//! Prefix-driven GGUF header parser.

use super::{GgufHeader, GgufValue, TensorInfo, DEFAULT_ALIGNMENT, GGUF_MAGIC};
use crate::error::GgufError;
use crate::quant::GgmlType;
use std::collections::BTreeMap;

/// Result of trying to parse a header from a prefix of the file.
#[derive(Debug)]
pub enum HeaderParse {
    /// The header is complete.
    Done(Box<GgufHeader>),
    /// The prefix ends inside the header; read at least this many bytes from the start and retry.
    NeedBytes(u64),
}

/// Largest dimension count a tensor may have (ggml's GGML_MAX_DIMS).
const MAX_DIMS: u32 = 4;
/// Deepest nesting of metadata arrays we accept.
const MAX_ARRAY_DEPTH: usize = 4;

/// Parses the GGUF header from `prefix`, the first bytes of a file of `file_size` bytes.
///
/// # Errors
/// [`GgufError`] for a wrong magic, an unsupported version, a count or length that cannot fit in the
/// file, an unknown value or tensor type, tensor data beyond the end of the file, or a header that is
/// truncated (when `prefix` is already the whole file).
pub fn parse_header(prefix: &[u8], file_size: u64) -> Result<HeaderParse, GgufError> {
    let mut cur = Cursor {
        buf: prefix,
        pos: 0,
        file_size,
        elements: 0,
    };
    match parse(&mut cur) {
        Ok(h) => Ok(HeaderParse::Done(Box::new(h))),
        // A header never needs more than this: refuse before the caller reads gigabytes of a sparse
        // or lying file.
        Err(Short(need)) if need > MAX_HEADER_BYTES => Err(GgufError::HeaderTooLarge {
            need,
            limit: MAX_HEADER_BYTES,
        }),
        Err(Short(need)) if (prefix.len() as u64) < file_size => {
            // Ask for at least twice as much so that the number of round trips stays logarithmic.
            let want = need.max(prefix.len() as u64 * 2).min(file_size);
            Ok(HeaderParse::NeedBytes(want))
        }
        Err(Short(_)) => Err(GgufError::TruncatedHeader { file_size }),
        Err(Fail(e)) => Err(e),
    }
}

enum Stop {
    /// Need at least this many bytes of prefix.
    Short(u64),
    Fail(GgufError),
}
use Stop::{Fail, Short};

impl From<GgufError> for Stop {
    fn from(e: GgufError) -> Self {
        Fail(e)
    }
}

/// Largest header accepted (metadata and tensor table). Big tokenizers take tens of MB.
pub const MAX_HEADER_BYTES: u64 = 256 << 20;

/// Most array elements in one header, all arrays together (a 256 k vocabulary with scores, types
/// and merges is about 1 M), so that metadata stays a bounded size in memory.
pub const MAX_ARRAY_ELEMENTS: u64 = 1 << 25;

/// Most metadata entries, and most tensors, in one header (models have a few thousand).
pub const MAX_ENTRIES: u64 = 1 << 20;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: u64,
    file_size: u64,
    /// Array elements read so far.
    elements: u64,
}

impl Cursor<'_> {
    fn take(&mut self, n: u64) -> Result<&[u8], Stop> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(GgufError::LengthOverflow { at: self.pos })?;
        if end > self.file_size {
            return Err(Short(end));
        }
        if end > self.buf.len() as u64 {
            return Err(Short(end));
        }
        let s = &self.buf[self.pos as usize..end as usize];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Stop> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Stop> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }
    fn u32(&mut self) -> Result<u32, Stop> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, Stop> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    /// Checks that `count` items of at least `min_item_bytes` each can fit in the rest of the file.
    fn check_count(&self, count: u64, min_item_bytes: u64, what: &'static str) -> Result<(), Stop> {
        let remaining = self.file_size.saturating_sub(self.pos);
        if count.saturating_mul(min_item_bytes) > remaining {
            return Err(Fail(GgufError::CountBeyondFile {
                what,
                count,
                at: self.pos,
                file_size: self.file_size,
            }));
        }
        Ok(())
    }
    fn string(&mut self) -> Result<String, Stop> {
        let at = self.pos;
        let len = self.u64()?;
        self.check_count(len, 1, "string length")?;
        if len > MAX_HEADER_BYTES {
            return Err(Fail(GgufError::HeaderTooLarge {
                need: len,
                limit: MAX_HEADER_BYTES,
            }));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| Fail(GgufError::InvalidUtf8 { at }))
    }
}

fn parse(cur: &mut Cursor) -> Result<GgufHeader, Stop> {
    let magic = cur.u32()?;
    if magic != GGUF_MAGIC {
        return Err(Fail(GgufError::BadMagic { found: magic }));
    }
    let version = cur.u32()?;
    if version != 2 && version != 3 {
        return Err(Fail(GgufError::UnsupportedVersion { version }));
    }
    let tensor_count = cur.u64()?;
    let kv_count = cur.u64()?;
    // Each KV needs at least a key length (8), a type (4) and one byte; each tensor at least 8+4+8+4+8.
    cur.check_count(kv_count, 13, "metadata entries")?;
    cur.check_count(tensor_count, 32, "tensors")?;
    for (what, count) in [("metadata entries", kv_count), ("tensors", tensor_count)] {
        if count > MAX_ENTRIES {
            return Err(Fail(GgufError::TooManyElements {
                what,
                count,
                at: cur.pos,
                limit: MAX_ENTRIES,
            }));
        }
    }

    let mut metadata = BTreeMap::new();
    for _ in 0..kv_count {
        let key = cur.string()?;
        let ty = cur.u32()?;
        let value = read_value(cur, ty, 0)?;
        if metadata.contains_key(&key) {
            return Err(Fail(GgufError::DuplicateKey { key }));
        }
        metadata.insert(key, value);
    }

    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a > 0 && a % 8 == 0 && a <= 1 << 20 => a,
            _ => return Err(Fail(GgufError::BadAlignment { value: v.summary() })),
        },
    };

    let mut tensors = Vec::with_capacity(tensor_count.min(1 << 16) as usize);
    let mut names = std::collections::HashSet::new();
    for _ in 0..tensor_count {
        let name = cur.string()?;
        let n_dims = cur.u32()?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(Fail(GgufError::BadTensor {
                name,
                reason: format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)"),
            }));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            dims.push(cur.u64()?);
        }
        let type_id = cur.u32()?;
        let offset = cur.u64()?;
        let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownTensorType {
            name: name.clone(),
            type_id,
        })?;
        let size_bytes = tensor_size(&name, &dims, ggml_type)?;
        if offset % alignment != 0 {
            return Err(Fail(GgufError::BadTensor {
                name,
                reason: format!("offset {offset} is not a multiple of the alignment {alignment}"),
            }));
        }
        if !names.insert(name.clone()) {
            return Err(Fail(GgufError::DuplicateTensor { name }));
        }
        tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            size_bytes,
        });
    }
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for w in by_offset.windows(2) {
        if w[0].offset.saturating_add(w[0].size_bytes) > w[1].offset {
            return Err(Fail(GgufError::OverlappingTensors {
                first: w[0].name.clone(),
                second: w[1].name.clone(),
            }));
        }
    }
    let data_start = cur.pos.div_ceil(alignment) * alignment;
    for t in &tensors {
        let end = data_start
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.size_bytes));
        match end {
            Some(end) if end <= cur.file_size => {}
            _ => {
                return Err(Fail(GgufError::TensorBeyondFile {
                    name: t.name.clone(),
                    offset: data_start.saturating_add(t.offset),
                    size: t.size_bytes,
                    file_size: cur.file_size,
                }))
            }
        }
    }
    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        alignment,
        data_start,
        file_size: cur.file_size,
    })
}

fn tensor_size(name: &str, dims: &[u64], ty: GgmlType) -> Result<u64, GgufError> {
    let bad = |reason: String| GgufError::BadTensor {
        name: name.to_string(),
        reason,
    };
    if dims.contains(&0) {
        return Err(bad(format!("zero-sized dimension in {dims:?}")));
    }
    if !dims[0].is_multiple_of(ty.block_elems()) {
        return Err(bad(format!(
            "row length {} is not a multiple of the {:?} block size {}",
            dims[0],
            ty,
            ty.block_elems()
        )));
    }
    let mut rows: u64 = 1;
    for &d in &dims[1..] {
        rows = rows
            .checked_mul(d)
            .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    }
    let row_bytes = (dims[0] / ty.block_elems())
        .checked_mul(ty.block_bytes())
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))?;
    rows.checked_mul(row_bytes)
        .ok_or_else(|| bad(format!("dimensions {dims:?} overflow")))
}

fn read_value(cur: &mut Cursor, ty: u32, depth: usize) -> Result<GgufValue, Stop> {
    Ok(match ty {
        0 => GgufValue::U64(cur.u8()? as u64),
        1 => GgufValue::I64(cur.u8()? as i8 as i64),
        2 => GgufValue::U64(cur.u16()? as u64),
        3 => GgufValue::I64(cur.u16()? as i16 as i64),
        4 => GgufValue::U64(cur.u32()? as u64),
        5 => GgufValue::I64(cur.u32()? as i32 as i64),
        6 => GgufValue::F64(f32::from_bits(cur.u32()?) as f64),
        7 => GgufValue::Bool(cur.u8()? != 0),
        8 => GgufValue::Str(cur.string()?),
        10 => GgufValue::U64(cur.u64()?),
        11 => GgufValue::I64(cur.u64()? as i64),
        12 => GgufValue::F64(f64::from_bits(cur.u64()?)),
        9 => {
            if depth >= MAX_ARRAY_DEPTH {
                return Err(Fail(GgufError::BadValue {
                    at: cur.pos,
                    reason: "arrays nested too deeply".into(),
                }));
            }
            let elem = cur.u32()?;
            let count = cur.u64()?;
            let min = match elem {
                0 | 1 | 7 => 1,
                2 | 3 => 2,
                4..=6 => 4,
                8 | 10 | 11 | 12 => 8,
                9 => 12,
                other => {
                    return Err(Fail(GgufError::BadValue {
                        at: cur.pos,
                        reason: format!("unknown array element type {other}"),
                    }))
                }
            };
            cur.check_count(count, min, "array elements")?;
            cur.elements = cur.elements.saturating_add(count);
            if cur.elements > MAX_ARRAY_ELEMENTS {
                return Err(Fail(GgufError::TooManyElements {
                    what: "metadata arrays",
                    count: cur.elements,
                    at: cur.pos,
                    limit: MAX_ARRAY_ELEMENTS,
                }));
            }
            // Capacity from what the buffer can hold, not from the count (which a sparse file can
            // inflate): the vector grows if the data really is there.
            let have = (cur.buf.len() as u64).saturating_sub(cur.pos) / min;
            let cap = count.min(have).min(1 << 20) as usize;
            match elem {
                8 => {
                    let mut v = Vec::with_capacity(cap);
                    for _ in 0..count {
                        v.push(cur.string()?);
                    }
                    GgufValue::StrArray(v)
                }
                9 => {
                    let mut v = Vec::with_capacity(cap);
                    for _ in 0..count {
                        v.push(read_value(cur, elem, depth + 1)?);
                    }
                    GgufValue::Array(v)
                }
                // Numbers and booleans (as 0 and 1) are kept as one f64 each.
                _ => {
                    let mut v = Vec::with_capacity(cap);
                    for _ in 0..count {
                        let x = read_value(cur, elem, depth + 1)?;
                        v.push(match x {
                            GgufValue::Bool(b) => f64::from(u8::from(b)),
                            x => x.as_f64().unwrap_or(f64::NAN),
                        });
                    }
                    GgufValue::NumArray(v)
                }
            }
        }
        other => {
            return Err(Fail(GgufError::BadValue {
                at: cur.pos,
                reason: format!("unknown value type {other}"),
            }))
        }
    })
}
