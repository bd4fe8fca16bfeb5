//! A sink that keeps tensor bytes in memory (tests, small tensors).

use std::collections::HashMap;
use webmoe_core::TensorSink;

/// Collects each tensor's bytes by tensor index, refusing pieces that arrive out of order.
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Bytes received so far, by tensor index.
    pub tensors: HashMap<usize, Vec<u8>>,
}

impl TensorSink for MemorySink {
    fn write(&mut self, index: usize, offset: u64, bytes: &[u8]) -> Result<(), String> {
        let v = self.tensors.entry(index).or_default();
        if v.len() as u64 != offset {
            return Err(format!(
                "tensor {index}: piece at {offset} arrived after {} bytes",
                v.len()
            ));
        }
        v.extend_from_slice(bytes);
        Ok(())
    }
}
