//! Opening a model file: header, description, tokenizer, the device's engine (GPU or CPU, see
//! `webmoe_engine`), streamed weights.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use webmoe_core::gguf::GgufHeader;
use webmoe_core::model::ModelDesc;
use webmoe_core::options::EngineOptions;
use webmoe_core::quant::GgmlType;
use webmoe_core::tokenizer::Tokenizer;
use webmoe_engine::{AnyEngine, DeviceReport, OpenOptions};
use webmoe_loader::{
    open_gguf, stream_tensors, ByteSource, Checkpoint, FileSource, HttpSource, LoadError,
    OpenedGguf, DEFAULT_CHUNK_BYTES, DEFAULT_PARALLEL,
};

/// A model opened on the CPU side (no GPU yet): a GGUF file, or a Hugging Face folder read in place.
pub struct ModelFile {
    /// Where the tensor bytes come from (a GGUF file or URL, or a checkpoint's virtual data section).
    pub src: Box<dyn ByteSource + Sync>,
    /// The GGUF header (for a checkpoint: the GGUF-style header over its planned tensors, in the types
    /// the GPU stores).
    pub header: GgufHeader,
    /// The layout `src` serves: `header`, except for matrices quantized on load, which stream in their
    /// source type.
    pub streamed_header: GgufHeader,
    /// The model it describes.
    pub desc: ModelDesc,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// `(tensor index, streamed type)` of the tensors the GPU quantizes on load (a checkpoint's
    /// [`webmoe_loader::CheckpointLayout::quantized_on_load`]; none for GGUF).
    pub quantized_on_load: Vec<(usize, GgmlType)>,
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// A Hugging Face folder: a local directory, or a URL that does not name a `.gguf` file.
fn is_checkpoint(model: &str) -> bool {
    if is_url(model) {
        let path = model.split(['?', '#']).next().unwrap_or(model);
        !path.to_ascii_lowercase().ends_with(".gguf")
    } else {
        std::path::Path::new(model).is_dir()
    }
}

fn open_checkpoint(model: &str, quantize: Option<GgmlType>) -> Result<ModelFile> {
    let base = model.trim_end_matches('/').to_string();
    let open_file = |name: &str| -> Result<Option<Box<dyn ByteSource + Sync>>, LoadError> {
        if is_url(&base) {
            Ok(HttpSource::open_in_folder(&format!("{base}/"), name)?
                .map(|s| Box::new(s) as Box<dyn ByteSource + Sync>))
        } else {
            let p = std::path::Path::new(&base).join(name);
            if p.exists() {
                Ok(Some(Box::new(FileSource::open(&p)?)))
            } else {
                Ok(None)
            }
        }
    };
    let ck =
        Checkpoint::open(&base, &open_file, quantize).with_context(|| format!("model {model}"))?;
    let tokenizer = ck.tokenizer()?;
    Ok(ModelFile {
        header: ck.header.clone(),
        streamed_header: ck.streamed_header.clone(),
        desc: ck.model.desc.clone(),
        quantized_on_load: ck.quantized_on_load(),
        src: Box::new(ck),
        tokenizer,
    })
}

/// Reads the header and builds the model description and tokenizer. `model` is a GGUF path or
/// `http(s)://` URL, or a Hugging Face model folder (a directory, or a URL not ending in `.gguf`).
///
/// # Errors
/// When the files cannot be read, are not a valid GGUF or checkpoint, or describe an unsupported model.
pub fn open(model: &str) -> Result<ModelFile> {
    open_quantized(model, None)
}

/// [`open`], quantizing a Hugging Face checkpoint's weight matrices to `quantize` (Q8_0, Q4_0 or Q4_K)
/// as they stream in.
///
/// # Errors
/// As [`open`]; also when `quantize` is given for a GGUF file (its tensors are stored as they are).
pub fn open_quantized(model: &str, quantize: Option<GgmlType>) -> Result<ModelFile> {
    if is_checkpoint(model) {
        return open_checkpoint(model, quantize);
    }
    if let Some(ty) = quantize {
        anyhow::bail!(
            "--quantize {} applies to Hugging Face folders; {model} is a GGUF file, whose tensors are used as stored",
            ty.name().to_lowercase()
        );
    }
    let src: Box<dyn ByteSource + Sync> = if is_url(model) {
        Box::new(HttpSource::open(model)?)
    } else {
        Box::new(FileSource::open(std::path::Path::new(model))?)
    };
    let OpenedGguf { header, desc, .. } = open_gguf(src.as_ref()).map_err(|e| match e {
        LoadError::Model(_) => anyhow::Error::new(e).context(format!("model {model}")),
        e => anyhow::Error::new(e).context(format!("reading {model}")),
    })?;
    let tokenizer = Tokenizer::from_gguf(&header).context("building the tokenizer")?;
    Ok(ModelFile {
        src,
        streamed_header: header.clone(),
        header,
        desc,
        tokenizer,
        quantized_on_load: Vec::new(),
    })
}

/// A model ready to run.
pub struct Loaded {
    /// The opened file.
    pub file: ModelFile,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// The engine with the weights loaded.
    pub engine: AnyEngine,
    /// Which device runs it, and why.
    pub device: DeviceReport,
}

/// Opens `model` (a path or an `http(s)://` URL) on the device `auto` chooses and streams the weights
/// in, with a progress bar on stderr unless `quiet`.
///
/// # Errors
/// Everything [`open`] reports, tokenizer errors, a model too large for every device, read errors.
pub fn load(model: &str, opts: EngineOptions, quiet: bool) -> Result<Loaded> {
    let open = OpenOptions {
        engine: opts,
        ..Default::default()
    };
    load_on(model, &open, None, quiet)
}

/// [`load`] on the device `open` asks for, with quantization on load for Hugging Face checkpoints (see
/// [`open_quantized`]).
///
/// # Errors
/// As [`load`] and [`open_quantized`]; no GPU when `device gpu` is asked for.
pub fn load_on(
    model: &str,
    open: &OpenOptions,
    quantize: Option<GgmlType>,
    quiet: bool,
) -> Result<Loaded> {
    let file = open_quantized(model, quantize)?;
    let tokenizer = file.tokenizer.clone();
    let start = std::time::Instant::now();
    let now = move || start.elapsed().as_secs_f64();
    let (mut engine, device) =
        pollster::block_on(webmoe_engine::open(&file.desc, &file.header, open, &now))?;
    for (index, ty) in file.quantized_on_load.iter().copied() {
        engine.quantize_on_upload(index, ty)?;
    }
    let indices = file.desc.tensor_indices(&file.header);
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(0)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "loading {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap(),
    );
    // Testing: `WEBMOE_TEST_LOSE_DEVICE_AFTER_BYTES=N` destroys the GPU device once N weight bytes
    // are in, as a driver reset would (the browser's test option is `loseDeviceAfterBytesForTesting`).
    let lose_after: Option<u64> = std::env::var("WEBMOE_TEST_LOSE_DEVICE_AFTER_BYTES")
        .ok()
        .and_then(|v| v.parse().ok());
    let device_handle = engine.gpu().map(|g| g.gpu.device.clone());
    stream_tensors(
        file.src.as_ref(),
        &file.streamed_header,
        &indices,
        DEFAULT_CHUNK_BYTES,
        DEFAULT_PARALLEL,
        engine.weights_mut(),
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
            if let (Some(n), Some(d)) = (lose_after, &device_handle) {
                if done >= n {
                    d.destroy();
                }
            }
        },
    )
    .with_context(|| format!("loading weights from {}", file.src.name()))?;
    engine.finish_upload()?;
    // A device lost while the weights streamed in is an error now, not at the first token.
    if let Some(g) = engine.gpu() {
        g.gpu.check().context("loading weights")?;
    }
    bar.finish_and_clear();
    Ok(Loaded {
        file,
        tokenizer,
        engine,
        device,
    })
}
