//! Loading a model in the browser: header with a few small reads, model description, the device choice
//! and its memory plan (refuse before downloading when it cannot fit; see `webmoe_engine`), then tensor
//! data in the chunks of a [`ChunkPlan`] with several reads in flight, each chunk taken from the cache or
//! the network, copied into one reused buffer, written to its GPU buffers (or repacked into the CPU
//! backend's store) and dropped.

use crate::cache::{ChunkCache, Manifest};
use crate::error::WebError;
use crate::js::{call1, heap_bytes, now_s, to_js};
use crate::source::{open_url, Source};
use crate::threads::ThreadsFactory;
use futures_util::stream::{self, StreamExt};
use js_sys::Uint8Array;
use serde::Serialize;
use std::cell::RefCell;
use webmoe_core::tokenizer::Tokenizer;
use webmoe_engine::{AnyEngine, DeviceReport, OpenOptions};
use webmoe_loader::{ChunkPlan, GgufOpening, LoadError, OpenedGguf, FIRST_HEADER_READ};

/// Load settings from JavaScript.
pub struct LoadSpec {
    /// URL, or `None` with a `blob`.
    pub url: Option<String>,
    /// A local `File`/`Blob`.
    pub blob: Option<web_sys::Blob>,
    /// Chunk size in bytes.
    pub chunk_bytes: u64,
    /// Reads in flight.
    pub parallel: usize,
    /// Keep chunks in the Cache API.
    pub use_cache: bool,
    /// Device request and engine settings.
    pub open: OpenOptions,
    /// The threaded CPU module is up (cross-origin isolated page): run the CPU backend there.
    pub threaded_cpu: bool,
    /// Testing: destroy the GPU device once this many weight bytes are in (a device lost mid-load).
    pub lose_device_after_bytes: Option<u64>,
}

/// Facts about the finished load (part of `stats()`).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    /// URL or "the local file".
    pub source: String,
    /// Tensor bytes read.
    pub total_bytes: u64,
    /// Of those, from the cache.
    pub cached_bytes: u64,
    /// Seconds from start to ready.
    pub load_seconds: f64,
    /// Heap size before loading.
    pub heap_before_bytes: f64,
    /// Largest heap size seen during the load.
    pub heap_peak_bytes: f64,
    /// Why caching was switched off during the load (quota), if it was.
    pub cache_warning: Option<String>,
    /// The server ignored `Range` requests.
    pub streamed_without_range: bool,
    /// File offset where tensor data starts (requests below it read only the header).
    pub data_start: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Progress<'a> {
    phase: &'a str,
    loaded_bytes: u64,
    total_bytes: u64,
    cached_bytes: u64,
    bytes_per_second: f64,
    from_cache: bool,
    heap_bytes: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    warning: Option<&'a str>,
    /// Seconds since the last chunk arrived, on the events sent while the download waits.
    #[serde(skip_serializing_if = "Option::is_none")]
    stalled_seconds: Option<f64>,
}

/// How often progress is reported while no chunk arrives (a stalled server still shows progress).
const WAITING_TICK_MS: f64 = 500.0;

/// A loaded model.
pub struct Loaded {
    /// The engine (GPU or CPU).
    pub engine: AnyEngine,
    /// Which device runs it, and why.
    pub device: DeviceReport,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// How the load went.
    pub report: LoadReport,
}

/// A model error named by its source.
fn named(src: &Source, e: LoadError) -> WebError {
    match e {
        LoadError::Model(m) => WebError::InvalidModel(format!("{}: {m}", src.name())),
        e => e.into(),
    }
}

/// Loads a model, reporting progress to `on_progress`.
///
/// # Errors
/// [`WebError`] naming the cause: download, changed file, invalid model, no WebGPU (device 'gpu'), too
/// large for every device, device failure, a failed self-test (device 'gpu').
pub async fn load(spec: LoadSpec, on_progress: &js_sys::Function) -> Result<Loaded, WebError> {
    let t0 = now_s();
    let heap_before = heap_bytes();
    let mut heap_peak = heap_before;
    let progress = |p: &Progress| {
        if let Ok(v) = to_js(p) {
            call1(on_progress, &v);
        }
    };
    let header_progress = |phase| Progress {
        phase,
        loaded_bytes: 0,
        total_bytes: 0,
        cached_bytes: 0,
        bytes_per_second: 0.0,
        from_cache: false,
        heap_bytes: heap_bytes(),
        warning: None,
        stalled_seconds: None,
    };
    progress(&header_progress("header"));
    let (src, first) = match (&spec.url, &spec.blob) {
        (_, Some(b)) => {
            let src = Source::Blob(b.clone());
            let first = src.read(0, FIRST_HEADER_READ.min(src.size())).await?;
            (src, first)
        }
        (Some(url), None) => open_url(url, FIRST_HEADER_READ).await?,
        (None, None) => return Err(WebError::Invalid("no model given (a URL or a File)".into())),
    };
    // The loader's opening recipe (the native one's reads and checks); `first` is its first read.
    let mut opening = GgufOpening::new(src.size());
    opening.feed(&first.to_vec()).map_err(|e| named(&src, e))?;
    drop(first);
    while let Some((offset, len)) = opening.need() {
        let bytes = src.read(offset, len).await?;
        opening.feed(&bytes.to_vec()).map_err(|e| named(&src, e))?;
    }
    let OpenedGguf {
        header,
        header_bytes,
        rope_freqs,
        desc,
    } = opening.finish().map_err(|e| named(&src, e))?;
    let mut open = spec.open.clone();
    if spec.threaded_cpu {
        open.external_cpu = Some(
            ThreadsFactory {
                header: header_bytes,
                file_size: src.size(),
                rope: rope_freqs.clone(),
            }
            .source(),
        );
    } else {
        drop(header_bytes);
    }
    let tokenizer = Tokenizer::from_gguf(&header)
        .map_err(|e| WebError::InvalidModel(format!("{}: tokenizer: {e}", src.name())))?;
    progress(&header_progress("device"));
    // Choose the device; refuse before downloading when the model fits none.
    let (mut engine, device) = webmoe_engine::open(&desc, &header, &open, &now_s).await?;

    let indices = desc.tensor_indices(&header);
    let chunks = ChunkPlan::new(&header, &indices, spec.chunk_bytes);
    let total = chunks.total_bytes();

    let remote = src.remote();
    let cache = match (&remote, spec.use_cache) {
        (Some(_), true) => ChunkCache::open().await,
        _ => None,
    };
    if let (Some(c), Some(r)) = (&cache, &remote) {
        let stale = c
            .manifest(&r.url)
            .await
            .is_some_and(|m| m.validator != r.validator || m.size != r.size);
        if stale {
            let _ = c.remove(&r.url, true).await;
        }
    }
    let parallel = if src.parallel_ok() {
        spec.parallel.max(1)
    } else {
        1
    };
    // Cleared when the browser refuses a write (quota): the load goes on without caching.
    let cache_warning: RefCell<Option<String>> = RefCell::new(None);
    let (src_ref, cache_ref, remote_ref, warn_ref) = (&src, &cache, &remote, &cache_warning);
    // Each read yields (bytes in JS memory, came from the cache, is in the cache now).
    let mut reads = stream::iter(chunks.chunks.iter().copied())
        .map(|c| async move {
            let (Some(cache), Some(r)) = (cache_ref, remote_ref) else {
                return Ok::<_, LoadError>((src_ref.read(c.offset, c.len).await?, false, false));
            };
            if let Some(b) = cache.get(r, c.offset, c.len).await {
                return Ok((b, true, true));
            }
            let bytes = src_ref.read(c.offset, c.len).await?;
            let mut stored = false;
            if warn_ref.borrow().is_none() {
                match cache.put(r, c.offset, &bytes).await {
                    Ok(()) => stored = true,
                    Err(e) => {
                        warn_ref.borrow_mut().get_or_insert(format!(
                            "the browser refused to store more of the model ({e}); it still loads, but a reload downloads it again"
                        ));
                    }
                }
            }
            Ok((bytes, false, stored))
        })
        .buffered(parallel);
    let mut buf: Vec<u8> = Vec::new();
    let (mut done, mut hits, mut stored_bytes) = (0u64, 0u64, 0u64);
    let t_data = now_s();
    let mut manifest = remote.as_ref().map(|r| Manifest {
        url: r.url.clone(),
        validator: r.validator.clone(),
        size: r.size,
        cached_bytes: 0,
        total_bytes: total,
        complete: false,
    });
    // A "weights" event: bytes in, of which from the cache, whether the last chunk was, and the
    // seconds without a chunk (on the events sent while waiting).
    let weights_progress =
        |done: u64, hits: u64, from_cache: bool, stalled_seconds| Progress::<'static> {
            phase: "weights",
            loaded_bytes: done,
            total_bytes: total,
            cached_bytes: hits,
            bytes_per_second: done as f64 / (now_s() - t_data).max(1e-3),
            from_cache,
            heap_bytes: heap_bytes(),
            warning: None,
            stalled_seconds,
        };
    let mut k = 0;
    let mut last_chunk_at = now_s();
    loop {
        // The next chunk, or a tick that reports the wait (the stall timeout ends a dead read).
        let next = futures_util::future::select(
            reads.next(),
            Box::pin(crate::js::sleep_ms(WAITING_TICK_MS)),
        )
        .await;
        let r = match next {
            futures_util::future::Either::Left((Some(r), _)) => r,
            futures_util::future::Either::Left((None, _)) => break,
            futures_util::future::Either::Right(_) => {
                let waited = now_s() - last_chunk_at;
                progress(&weights_progress(done, hits, false, Some(waited)));
                continue;
            }
        };
        last_chunk_at = now_s();
        let (bytes, hit, stored): (Uint8Array, bool, bool) = r?;
        let c = chunks.chunks[k];
        buf.resize(c.len as usize, 0);
        bytes.copy_to(&mut buf);
        drop(bytes);
        chunks.deliver(k, &buf, engine.weights_mut())?;
        done += c.len;
        if let Some(g) = engine.gpu() {
            if spec.lose_device_after_bytes.is_some_and(|n| done >= n) {
                g.gpu.device.destroy();
            }
            // A device lost while the weights stream in ends the load now, as device-lost.
            g.gpu.check()?;
        }
        hits += if hit { c.len } else { 0 };
        stored_bytes += if stored { c.len } else { 0 };
        heap_peak = heap_peak.max(heap_bytes());
        // Keep the manifest current every few chunks so an interrupted load is listed.
        if let (Some(cc), Some(m)) = (&cache, &mut manifest) {
            if (stored && k % 4 == 0) || k + 1 == chunks.chunks.len() {
                m.cached_bytes = stored_bytes;
                m.complete = stored_bytes == total;
                let _ = cc.set_manifest(m).await;
            }
        }
        let warning = cache_warning.borrow().clone();
        progress(&Progress {
            warning: warning.as_deref(),
            ..weights_progress(done, hits, hit, None)
        });
        k += 1;
    }
    drop(reads);
    drop(buf);
    engine.finish_upload()?;
    if let Some(g) = engine.gpu() {
        g.gpu.check()?;
    }
    let streamed = !src.parallel_ok();
    let report = LoadReport {
        source: src.name(),
        total_bytes: total,
        cached_bytes: hits,
        load_seconds: now_s() - t0,
        heap_before_bytes: heap_before,
        heap_peak_bytes: heap_peak.max(heap_bytes()),
        cache_warning: cache_warning.into_inner(),
        streamed_without_range: streamed,
        data_start: header.data_start,
    };
    progress(&Progress {
        phase: "ready",
        loaded_bytes: total,
        total_bytes: total,
        cached_bytes: 0,
        bytes_per_second: 0.0,
        from_cache: false,
        heap_bytes: heap_bytes(),
        warning: None,
        stalled_seconds: None,
    });
    Ok(Loaded {
        engine,
        device,
        tokenizer,
        report,
    })
}
