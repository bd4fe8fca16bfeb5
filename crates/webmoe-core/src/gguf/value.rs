//! GGUF metadata values.

/// A metadata value. Arrays of any element type are kept as a vector of values except for the
/// large homogeneous arrays of the tokenizer, which stay typed to save memory.
#[derive(Debug, Clone, PartialEq)]
pub enum GgufValue {
    /// Unsigned integer of any width (u8, u16, u32, u64).
    U64(u64),
    /// Signed integer of any width (i8, i16, i32, i64).
    I64(i64),
    /// f32 or f64.
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// UTF-8 string.
    Str(String),
    /// Array of strings.
    StrArray(Vec<String>),
    /// Array of numbers (any numeric element type), as f64.
    NumArray(Vec<f64>),
    /// Array of other values (bools, nested arrays).
    Array(Vec<GgufValue>),
}

impl GgufValue {
    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            GgufValue::U64(v) => Some(v),
            GgufValue::I64(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
    /// The value as a float (integers are converted).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            GgufValue::F64(v) => Some(v),
            GgufValue::U64(v) => Some(v as f64),
            GgufValue::I64(v) => Some(v as f64),
            _ => None,
        }
    }
    /// The value as a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            GgufValue::Bool(v) => Some(v),
            GgufValue::U64(v) => Some(v != 0),
            _ => None,
        }
    }
    /// The value as a string slice.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            GgufValue::Str(s) => Some(s),
            _ => None,
        }
    }
    /// The value as a string array.
    pub fn as_str_array(&self) -> Option<&[String]> {
        match self {
            GgufValue::StrArray(v) => Some(v),
            _ => None,
        }
    }
    /// The value as a numeric array.
    pub fn as_num_array(&self) -> Option<&[f64]> {
        match self {
            GgufValue::NumArray(v) => Some(v),
            _ => None,
        }
    }
    /// Short human-readable rendering (arrays summarized).
    pub fn summary(&self) -> String {
        match self {
            GgufValue::U64(v) => v.to_string(),
            GgufValue::I64(v) => v.to_string(),
            GgufValue::F64(v) => v.to_string(),
            GgufValue::Bool(v) => v.to_string(),
            GgufValue::Str(s) if s.len() > 60 => {
                format!("{:?}… ({} bytes)", &s[..s.floor_char_boundary(60)], s.len())
            }
            GgufValue::Str(s) => format!("{s:?}"),
            GgufValue::StrArray(v) => format!("[{} strings]", v.len()),
            GgufValue::NumArray(v) => format!("[{} numbers]", v.len()),
            GgufValue::Array(v) => format!("[{} values]", v.len()),
        }
    }
}
