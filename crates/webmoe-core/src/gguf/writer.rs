//! A small GGUF writer, for test fixtures and synthetic benchmark models.

use super::{GgufValue, DEFAULT_ALIGNMENT, GGUF_MAGIC};
use crate::quant::GgmlType;

/// Builds a GGUF file in memory.
#[derive(Debug, Clone, Default)]
pub struct GgufWriter {
    /// Metadata, written in this order.
    pub metadata: Vec<(String, GgufValue)>,
    /// Tensors: name, GGUF dims, type, raw data.
    pub tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &GgufValue, with_type: bool) {
    let ty: u32 = match v {
        GgufValue::U64(x) if *x <= u32::MAX as u64 => 4,
        GgufValue::U64(_) => 10,
        GgufValue::I64(_) => 11,
        GgufValue::F64(_) => 6,
        GgufValue::Bool(_) => 7,
        GgufValue::Str(_) => 8,
        _ => 9,
    };
    if with_type {
        out.extend_from_slice(&ty.to_le_bytes());
    }
    match v {
        GgufValue::U64(x) if ty == 4 => out.extend_from_slice(&(*x as u32).to_le_bytes()),
        GgufValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        GgufValue::F64(x) => out.extend_from_slice(&(*x as f32).to_le_bytes()),
        GgufValue::Bool(b) => out.push(*b as u8),
        GgufValue::Str(s) => put_str(out, s),
        GgufValue::StrArray(a) => {
            out.extend_from_slice(&8u32.to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            a.iter().for_each(|s| put_str(out, s));
        }
        GgufValue::NumArray(a) => {
            out.extend_from_slice(&6u32.to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            a.iter()
                .for_each(|x| out.extend_from_slice(&(*x as f32).to_le_bytes()));
        }
        GgufValue::Array(a) => {
            let elem = match a.first() {
                Some(GgufValue::Bool(_)) => 7u32,
                _ => 9,
            };
            out.extend_from_slice(&elem.to_le_bytes());
            out.extend_from_slice(&(a.len() as u64).to_le_bytes());
            a.iter().for_each(|x| put_value(out, x, false));
        }
    }
}

impl GgufWriter {
    /// Adds a metadata entry (replacing an entry of the same key: a GGUF holds each key once).
    pub fn kv(&mut self, key: &str, v: GgufValue) -> &mut Self {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = v,
            None => self.metadata.push((key.into(), v)),
        }
        self
    }

    /// Adds a tensor (`data` must hold exactly the bytes its dims and type imply).
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> &mut Self {
        self.tensors.push((name.into(), dims.to_vec(), ty, data));
        self
    }

    /// Serializes to GGUF v3 bytes with the default alignment (32).
    pub fn to_bytes(&self) -> Vec<u8> {
        let align = DEFAULT_ALIGNMENT;
        let mut out = Vec::new();
        out.extend_from_slice(&GGUF_MAGIC.to_le_bytes());
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        out.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (k, v) in &self.metadata {
            put_str(&mut out, k);
            put_value(&mut out, v, true);
        }
        let mut offset = 0u64;
        for (name, dims, ty, data) in &self.tensors {
            put_str(&mut out, name);
            out.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            dims.iter()
                .for_each(|d| out.extend_from_slice(&d.to_le_bytes()));
            out.extend_from_slice(&ty.id().to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
            offset += (data.len() as u64).div_ceil(align) * align;
        }
        out.resize(
            (out.len() as u64).div_ceil(align) as usize * align as usize,
            0,
        );
        for (_, _, _, data) in &self.tensors {
            out.extend_from_slice(data);
            out.resize(
                (out.len() as u64).div_ceil(align) as usize * align as usize,
                0,
            );
        }
        out
    }
}
