//! Splitting rows across threads: rayon's pool natively, the calling thread on wasm32 (the browser
//! build is single-threaded).

use std::ops::Range;

/// Calls `f` on consecutive ranges covering `0..n`, each at least `min` long (but the last), in
/// parallel where threads exist.
pub fn ranges(n: usize, min: usize, f: impl Fn(Range<usize>) + Sync + Send) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        let threads = rayon::current_num_threads();
        if threads > 1 && n > min {
            let len = n.div_ceil(threads * 4).max(min);
            (0..n.div_ceil(len))
                .into_par_iter()
                .for_each(|c| f(c * len..((c + 1) * len).min(n)));
            return;
        }
    }
    let _ = min;
    f(0..n)
}

/// A mutable f32 buffer written by several threads at disjoint places.
pub struct Shared<'a> {
    ptr: *mut f32,
    len: usize,
    _life: std::marker::PhantomData<&'a mut [f32]>,
}

// SAFETY: `Shared` hands out only the sub-slices callers promise are disjoint (see `slice`).
unsafe impl Send for Shared<'_> {}
// SAFETY: as above.
unsafe impl Sync for Shared<'_> {}

impl<'a> Shared<'a> {
    /// Wraps `buf`.
    pub fn new(buf: &'a mut [f32]) -> Self {
        Shared {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            _life: std::marker::PhantomData,
        }
    }

    /// `buf[start..start + len]`.
    ///
    /// # Safety
    /// No two live slices may overlap.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        assert!(start + len <= self.len);
        std::slice::from_raw_parts_mut(self.ptr.add(start), len)
    }
}
