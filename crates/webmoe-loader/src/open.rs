//! The GGUF opening recipe, without I/O: which byte ranges to read (the header, in reads that grow
//! geometrically so a large tokenizer costs a few requests; then Llama 3's `rope_freqs` tensor, checked
//! before it is read), and what they become (the header, the bytes it was parsed from, the RoPE
//! frequencies and the model description). The native driver ([`crate::open_gguf`]) and the browser's
//! async one feed it the same way, so both open a file with the same reads and the same checks.

use crate::LoadError;
use webmoe_core::gguf::{parse_header, GgufHeader, HeaderParse};
use webmoe_core::model::ModelDesc;
use webmoe_core::quant::dequantize;

/// Bytes of the first read: most headers (with their tokenizer) fit.
pub const FIRST_HEADER_READ: u64 = 1 << 20;

/// An opened GGUF file.
#[derive(Debug, Clone)]
pub struct OpenedGguf {
    /// The parsed header.
    pub header: GgufHeader,
    /// The bytes the header was parsed from (the threaded CPU module parses them again).
    pub header_bytes: Vec<u8>,
    /// Llama 3's RoPE frequency factors, when the file has them.
    pub rope_freqs: Option<Vec<f32>>,
    /// The model the file describes.
    pub desc: ModelDesc,
}

/// The recipe's state: feed it the range [`GgufOpening::need`] asks for until it asks for none.
#[derive(Debug)]
pub struct GgufOpening {
    size: u64,
    buf: Vec<u8>,
    /// Bytes the parser asked for after the last read (it parses each read once).
    wanted: u64,
    header: Option<GgufHeader>,
    /// The byte range of `rope_freqs.weight`, while it is still to be read.
    rope_range: Option<(u64, u64)>,
    rope_freqs: Option<Vec<f32>>,
}

impl GgufOpening {
    /// The recipe for a file of `size` bytes.
    pub fn new(size: u64) -> Self {
        GgufOpening {
            size,
            buf: Vec::new(),
            wanted: 0,
            header: None,
            rope_range: None,
            rope_freqs: None,
        }
    }

    /// The next range to read, `(offset, len)`, or `None` when everything is read.
    pub fn need(&self) -> Option<(u64, u64)> {
        match &self.header {
            None if self.buf.is_empty() => Some((0, FIRST_HEADER_READ.min(self.size))),
            None => {
                let have = self.buf.len() as u64;
                // Grow geometrically so a big tokenizer costs a few requests, not many.
                Some((have, self.wanted.max(have * 2).min(self.size) - have))
            }
            Some(_) => self.rope_range,
        }
    }

    /// The header, once it is parsed.
    pub fn header(&self) -> Option<&GgufHeader> {
        self.header.as_ref()
    }

    /// The header alone (the recipe stops there), once it is parsed.
    pub fn into_header(self) -> Option<GgufHeader> {
        self.header
    }

    /// Takes the bytes of the range [`GgufOpening::need`] asked for.
    ///
    /// # Errors
    /// [`LoadError::Gguf`] for an invalid or truncated header, [`LoadError::Model`] for a
    /// `rope_freqs` tensor of the wrong shape or type, [`LoadError::Io`] when the bytes are not those
    /// asked for.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), LoadError> {
        let Some((offset, len)) = self.need() else {
            return Ok(());
        };
        if bytes.len() as u64 != len {
            return Err(LoadError::Io {
                source_name: "the model".into(),
                message: format!("short read: {} of {len} bytes at {offset}", bytes.len()),
            });
        }
        if self.header.is_some() {
            let t = self
                .header
                .as_ref()
                .and_then(|h| h.tensor("rope_freqs.weight"))
                .expect("rope_range is set from this tensor");
            let mut out = vec![0f32; t.n_elements() as usize];
            dequantize(t.ggml_type, bytes, &mut out);
            self.rope_freqs = Some(out);
            self.rope_range = None;
            return Ok(());
        }
        self.buf.extend_from_slice(bytes);
        let h = match parse_header(&self.buf, self.size)? {
            // More than is held and no more than the file: every read makes progress.
            HeaderParse::NeedBytes(n) if n > self.buf.len() as u64 && n <= self.size => {
                self.wanted = n;
                return Ok(());
            }
            HeaderParse::NeedBytes(n) => {
                return Err(LoadError::Io {
                    source_name: "the model".into(),
                    message: format!(
                        "the header needs {n} bytes of a {}-byte file (truncated?)",
                        self.size
                    ),
                })
            }
            HeaderParse::Done(h) => h,
        };
        if let Some(t) = h.tensor("rope_freqs.weight") {
            // Checked before it is read: an 88 MB "rope_freqs" is refused, not dequantized.
            webmoe_core::model::check_rope_freqs(t)?;
            let (start, _) = h.tensor_range(t);
            self.rope_range = Some((start, t.size_bytes));
        }
        self.header = Some(*h);
        Ok(())
    }

    /// The opened file, once [`GgufOpening::need`] asks for nothing more.
    ///
    /// # Errors
    /// [`LoadError::Model`] when the header does not describe a model webmoe runs;
    /// [`LoadError::Io`] when called before everything was read.
    pub fn finish(self) -> Result<OpenedGguf, LoadError> {
        let (Some(header), None) = (self.header, self.rope_range) else {
            return Err(LoadError::Io {
                source_name: "the model".into(),
                message: "the header was not read to the end".into(),
            });
        };
        let desc = ModelDesc::from_gguf(&header, self.rope_freqs.clone())?;
        Ok(OpenedGguf {
            header,
            header_bytes: self.buf,
            rope_freqs: self.rope_freqs,
            desc,
        })
    }
}
