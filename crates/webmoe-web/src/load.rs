//! Loading a model in the browser: header with a few small reads, model description, the device choice
//! and its memory plan (refuse before downloading when it cannot fit; see `webmoe_engine`), then tensor
//! data in the chunks of a [`ChunkPlan`] with several reads in flight, each chunk taken from the cache or
//! the network, copied into one reused buffer, written to its GPU buffers (or repacked into the CPU
//! backend's store) and dropped.

use crate::cache::{ChunkCache, Manifest};
use crate::error::WebError;
use crate::folder::{open_folder, FolderFiles, OpenedFolder};
use crate::js::{call1, heap_bytes, now_s, to_js};
use crate::source::{open_url, Source};
use crate::threads::ThreadsFactory;
use futures_util::stream::{self, StreamExt};
use js_sys::Uint8Array;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use webmoe_core::gguf::GgufHeader;
use webmoe_core::model::ModelDesc;
use webmoe_core::quant::GgmlType;
use webmoe_core::tokenizer::Tokenizer;
use webmoe_engine::{AnyEngine, DeviceReport, OpenOptions};
use webmoe_loader::{ChunkPlan, GgufOpening, LoadError, OpenedGguf, FIRST_HEADER_READ};

/// Load settings from JavaScript.
pub struct LoadSpec {
    /// URL, or `None` with a `blob`.
    pub url: Option<String>,
    /// A local `File`/`Blob` (a GGUF file).
    pub blob: Option<web_sys::Blob>,
    /// A picked or dropped Hugging Face folder: its files by name.
    pub files: Option<HashMap<String, web_sys::Blob>>,
    /// Quantize a Hugging Face folder's weight matrices on load (Q8_0, Q4_0 or Q4_K).
    pub quantize: Option<GgmlType>,
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
    /// File offset where tensor data starts (requests below it read only the header; 0 for a
    /// Hugging Face folder).
    pub data_start: u64,
    /// "gguf", or "folder" for a Hugging Face folder.
    pub format: &'static str,
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
fn named(name: &str, e: LoadError) -> WebError {
    match e {
        LoadError::Model(m) => WebError::InvalidModel(format!("{name}: {m}")),
        LoadError::Tokenizer(t) => WebError::InvalidModel(format!("{name}: tokenizer: {t}")),
        e => e.into(),
    }
}

/// Where the weights come from.
enum Weights {
    /// A GGUF file (URL or `File`).
    Gguf(Source),
    /// A Hugging Face folder (URL or picked files).
    Folder(FolderFiles, Box<OpenedFolder>),
}

/// A model opened on the CPU side, before the device is chosen.
struct OpenedModel {
    weights: Weights,
    /// The header as the engine stores the tensors.
    header: GgufHeader,
    /// The layout the weights stream in (as `header`, but matrices quantized on load keep their
    /// source type).
    streamed_header: GgufHeader,
    desc: ModelDesc,
    tokenizer: Tokenizer,
    /// For the threaded CPU module (GGUF only): the header bytes and RoPE factors.
    threads: Option<(Vec<u8>, Option<Vec<f32>>)>,
}

/// Bytes of one chunk as read: in JS memory (a GGUF range, or any cached chunk), or a folder's shard
/// ranges still to be assembled.
enum ChunkBytes {
    Js(Uint8Array),
    Ranges(Vec<(usize, u64, Uint8Array)>),
}

impl Weights {
    fn name(&self) -> String {
        match self {
            Weights::Gguf(src) => src.name(),
            Weights::Folder(files, _) => files.name(),
        }
    }

    /// The cache identity (URL sources only).
    fn remote(&self) -> Option<crate::source::Remote> {
        match self {
            Weights::Gguf(src) => src.remote(),
            Weights::Folder(files, f) => f.remote(files),
        }
    }

    fn parallel_ok(&self) -> bool {
        match self {
            Weights::Gguf(src) => src.parallel_ok(),
            Weights::Folder(_, f) => f.parallel_ok(),
        }
    }

    async fn read(&self, offset: u64, len: u64) -> Result<ChunkBytes, LoadError> {
        Ok(match self {
            Weights::Gguf(src) => ChunkBytes::Js(src.read(offset, len).await?),
            Weights::Folder(_, f) => ChunkBytes::Ranges(f.fetch(offset, len).await?),
        })
    }

    /// The bytes of the chunk of `len` bytes at `offset`, in `buf`.
    fn assemble(
        &self,
        offset: u64,
        len: u64,
        bytes: ChunkBytes,
        buf: &mut Vec<u8>,
    ) -> Result<(), LoadError> {
        match (self, bytes) {
            (_, ChunkBytes::Js(b)) => {
                buf.resize(len as usize, 0);
                b.copy_to(buf);
            }
            (Weights::Folder(_, f), ChunkBytes::Ranges(r)) => *buf = f.assemble(offset, len, r)?,
            (Weights::Gguf(_), ChunkBytes::Ranges(_)) => unreachable!("GGUF reads are one range"),
        }
        Ok(())
    }
}

/// Whether a URL names a GGUF file (its path ends in `.gguf`); other URLs are tried as a Hugging Face
/// folder first.
fn names_gguf(url: &str) -> bool {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.to_ascii_lowercase().ends_with(".gguf")
}

/// Opens a GGUF source through the loader's recipe (`first`: its first read).
async fn open_gguf(
    src: Source,
    first: Uint8Array,
    threaded: bool,
) -> Result<OpenedModel, WebError> {
    let name = src.name();
    let mut opening = GgufOpening::new(src.size());
    opening.feed(&first.to_vec()).map_err(|e| named(&name, e))?;
    drop(first);
    while let Some((offset, len)) = opening.need() {
        let bytes = src.read(offset, len).await?;
        opening.feed(&bytes.to_vec()).map_err(|e| named(&name, e))?;
    }
    let OpenedGguf {
        header,
        header_bytes,
        rope_freqs,
        desc,
    } = opening.finish().map_err(|e| named(&name, e))?;
    let tokenizer = Tokenizer::from_gguf(&header)
        .map_err(|e| WebError::InvalidModel(format!("{name}: tokenizer: {e}")))?;
    Ok(OpenedModel {
        weights: Weights::Gguf(src),
        streamed_header: header.clone(),
        header,
        desc,
        tokenizer,
        threads: threaded.then_some((header_bytes, rope_freqs)),
    })
}

/// An opened folder as a model.
fn folder_model(files: FolderFiles, f: OpenedFolder) -> Result<OpenedModel, WebError> {
    let name = files.name();
    let tokenizer = f.layout.tokenizer().map_err(|e| named(&name, e))?;
    Ok(OpenedModel {
        header: f.layout.header.clone(),
        streamed_header: f.layout.streamed_header.clone(),
        desc: f.layout.model.desc.clone(),
        tokenizer,
        threads: None,
        weights: Weights::Folder(files, Box::new(f)),
    })
}

/// Opens what `spec` names: a GGUF file or URL, a folder URL, or picked folder files.
async fn open_model(spec: &LoadSpec) -> Result<OpenedModel, WebError> {
    let quantize_gguf = |name: &str| {
        match spec.quantize {
        Some(ty) => Err(WebError::Invalid(format!(
            "quantize {} applies to Hugging Face folders; {name} is a GGUF file, whose tensors are used as stored",
            ty.name().to_lowercase()
        ))),
        None => Ok(()),
    }
    };
    if let Some(files) = &spec.files {
        let files = FolderFiles::Picked(files.clone());
        let name = files.name();
        return match open_folder(&files, spec.quantize).await {
            Ok(Some(f)) => folder_model(files, f),
            Ok(None) => Err(WebError::InvalidModel(format!(
                "{name} has no config.json: pick a Hugging Face model folder (config.json, *.safetensors, tokenizer.json), or one .gguf file"
            ))),
            Err(e) => Err(named(&name, e)),
        };
    }
    if let Some(b) = &spec.blob {
        quantize_gguf("the local file")?;
        let src = Source::Blob(b.clone());
        let first = src.read(0, FIRST_HEADER_READ.min(src.size())).await?;
        return open_gguf(src, first, spec.threaded_cpu).await;
    }
    let Some(url) = &spec.url else {
        return Err(WebError::Invalid(
            "no model given (a URL, a File or a folder's files)".into(),
        ));
    };
    if !names_gguf(url) {
        let files = FolderFiles::Url(url.clone());
        let name = files.name();
        match open_folder(&files, spec.quantize).await {
            Ok(Some(f)) => return folder_model(files, f),
            // No config.json under it: the URL may name a GGUF file without the extension.
            Ok(None) => {}
            Err(e) => return Err(named(&name, e)),
        }
    }
    quantize_gguf(url)?;
    let (src, first) = open_url(url, FIRST_HEADER_READ, false).await?;
    open_gguf(src, first, spec.threaded_cpu).await
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
    let OpenedModel {
        weights,
        header,
        streamed_header,
        desc,
        tokenizer,
        threads,
    } = open_model(&spec).await?;
    let mut open = spec.open.clone();
    if let Some((header_bytes, rope)) = threads {
        open.external_cpu = Some(
            ThreadsFactory {
                header: header_bytes,
                file_size: header.file_size,
                rope,
            }
            .source(),
        );
    }
    progress(&header_progress("device"));
    // Choose the device; refuse before downloading when the model fits none.
    let (mut engine, device) = webmoe_engine::open(&desc, &header, &open, &now_s).await?;
    if let Weights::Folder(_, f) = &weights {
        for (index, ty) in f.layout.quantized_on_load() {
            engine.quantize_on_upload(index, ty)?;
        }
    }

    let indices = desc.tensor_indices(&header);
    let chunks = ChunkPlan::new(&streamed_header, &indices, spec.chunk_bytes);
    let total = chunks.total_bytes();

    let remote = weights.remote();
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
    let parallel = if weights.parallel_ok() {
        spec.parallel.max(1)
    } else {
        1
    };
    // Cleared when the browser refuses a write (quota): the load goes on without caching.
    let cache_warning: RefCell<Option<String>> = RefCell::new(None);
    let (weights_ref, cache_ref, remote_ref) = (&weights, &cache, &remote);
    // Each read yields (its bytes, came from the cache).
    let mut reads = stream::iter(chunks.chunks.iter().copied())
        .map(|c| async move {
            if let (Some(cache), Some(r)) = (cache_ref, remote_ref) {
                if let Some(b) = cache.get(r, c.offset, c.len).await {
                    return Ok::<_, LoadError>((ChunkBytes::Js(b), true));
                }
            }
            Ok((weights_ref.read(c.offset, c.len).await?, false))
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
        let (bytes, hit) = r?;
        let c = chunks.chunks[k];
        // A GGUF chunk read from the network is cached as it came; a folder's once assembled.
        let fetched_js = match &bytes {
            ChunkBytes::Js(b) if !hit => Some(b.clone()),
            _ => None,
        };
        weights.assemble(c.offset, c.len, bytes, &mut buf)?;
        let mut stored = hit;
        if let (Some(cc), Some(r), false) = (&cache, &remote, hit) {
            if cache_warning.borrow().is_none() {
                let js = fetched_js.unwrap_or_else(|| Uint8Array::from(&buf[..]));
                match cc.put(r, c.offset, &js).await {
                    Ok(()) => stored = true,
                    Err(e) => {
                        cache_warning.borrow_mut().get_or_insert(format!(
                            "the browser refused to store more of the model ({e}); it still loads, but a reload downloads it again"
                        ));
                    }
                }
            }
        }
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
    let streamed = !weights.parallel_ok();
    let report = LoadReport {
        source: weights.name(),
        total_bytes: total,
        cached_bytes: hits,
        load_seconds: now_s() - t0,
        heap_before_bytes: heap_before,
        heap_peak_bytes: heap_peak.max(heap_bytes()),
        cache_warning: cache_warning.into_inner(),
        streamed_without_range: streamed,
        data_start: match &weights {
            Weights::Gguf(_) => header.data_start,
            Weights::Folder(..) => 0,
        },
        format: match &weights {
            Weights::Gguf(_) => "gguf",
            Weights::Folder(..) => "folder",
        },
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
