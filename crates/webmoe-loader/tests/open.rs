//! The GGUF opening recipe (`GgufOpening`, driven natively by `open_gguf` and in the browser by
//! `webmoe-web/src/load.rs`): a large header costs a few reads that grow geometrically, `rope_freqs`
//! is checked before it is read and read once, and its reads give the same header as parsing the
//! whole file.

use std::cell::RefCell;
use webmoe_core::gguf::{parse_header, HeaderParse};
use webmoe_core::quant::GgmlType;
use webmoe_core::synthetic::SyntheticLlama;
use webmoe_loader::{open_gguf, ByteSource, LoadError, MemorySource, FIRST_HEADER_READ};

/// A source that records its reads.
struct Counting(MemorySource, RefCell<Vec<(u64, u64)>>);

impl ByteSource for Counting {
    fn len(&self) -> u64 {
        self.0.len()
    }
    fn read_at(&self, offset: u64, len: u64) -> Result<Vec<u8>, LoadError> {
        self.1.borrow_mut().push((offset, len));
        self.0.read_at(offset, len)
    }
    fn name(&self) -> String {
        "counting".into()
    }
}

fn model(vocab: u64) -> SyntheticLlama {
    SyntheticLlama {
        vocab,
        hidden: 64,
        layers: 1,
        heads: 2,
        kv_heads: 1,
        ffn: 96,
        ty: GgmlType::Q8_0,
        untied: false,
        context: 128,
        seed: 1,
        experts: None,
    }
}

#[test]
fn a_large_header_takes_a_few_growing_reads_and_parses_as_the_whole_file() {
    let bytes = model(150_000).writer().to_bytes();
    let HeaderParse::Done(whole) = parse_header(&bytes, bytes.len() as u64).unwrap() else {
        panic!("whole file")
    };
    let src = Counting(MemorySource(bytes), RefCell::new(Vec::new()));
    let opened = open_gguf(&src).unwrap();
    assert_eq!(opened.header.tensors, whole.tensors);
    assert_eq!(opened.header.data_start, whole.data_start);
    assert_eq!(opened.desc.config.vocab_size, 150_000);
    let reads = src.1.into_inner();
    assert!(
        whole.data_start > 2 * FIRST_HEADER_READ,
        "a header over 2 MiB"
    );
    assert_eq!(reads[0], (0, FIRST_HEADER_READ));
    let mut have = FIRST_HEADER_READ;
    for &(offset, len) in &reads[1..] {
        assert_eq!(offset, have, "reads follow one another: {reads:?}");
        assert!(
            len >= have,
            "each read at least doubles what is held: {reads:?}"
        );
        have += len;
    }
    assert!(reads.len() <= 3, "{reads:?}");
}

#[test]
fn rope_freqs_is_checked_before_it_is_read_and_read_once() {
    let base = model(64);
    // Llama 3 files carry `rope_freqs.weight`: head_dim / 2 factors.
    let mut w = base.writer();
    let factors: Vec<f32> = (0..16).map(|i| 1.0 + i as f32).collect();
    w.tensor(
        "rope_freqs.weight",
        &[16],
        GgmlType::F32,
        bytemuck_bytes(&factors),
    );
    let src = Counting(MemorySource(w.to_bytes()), RefCell::new(Vec::new()));
    let opened = open_gguf(&src).unwrap();
    assert_eq!(opened.rope_freqs.as_deref(), Some(&factors[..]));
    let t = opened.header.tensor("rope_freqs.weight").unwrap();
    let (start, _) = opened.header.tensor_range(t);
    let reads = src.1.into_inner();
    assert_eq!(reads.last(), Some(&(start, 64)), "{reads:?}");

    // A "rope_freqs" far larger than any head is refused without reading it.
    let mut w = base.writer();
    w.tensor(
        "rope_freqs.weight",
        &[1 << 20],
        GgmlType::F32,
        vec![0; 4 << 20],
    );
    let bytes = w.to_bytes();
    let src = Counting(MemorySource(bytes), RefCell::new(Vec::new()));
    let e = open_gguf(&src).unwrap_err();
    assert!(
        matches!(e, LoadError::Model(_)) && e.to_string().contains("rope_freqs"),
        "{e}"
    );
    let read: u64 = src.1.into_inner().iter().map(|r| r.1).sum();
    assert!(read <= FIRST_HEADER_READ, "{read} bytes read");
}

fn bytemuck_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
