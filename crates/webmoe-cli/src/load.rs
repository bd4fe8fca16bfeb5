//! Opening a model file: header, description, tokenizer, GPU engine, streamed weights.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use webmoe_core::gguf::GgufHeader;
use webmoe_core::model::ModelDesc;
use webmoe_core::tokenizer::Tokenizer;
use webmoe_gpu::{Engine, EngineOptions, Gpu, GpuOptions};
use webmoe_loader::{
    read_gguf_header, read_tensor_f32, stream_tensors, ByteSource, FileSource, HttpSource,
    DEFAULT_CHUNK_BYTES, DEFAULT_PARALLEL,
};

/// A model file opened on the CPU side (no GPU yet).
pub struct ModelFile {
    /// Where the bytes come from (a local file or an HTTP URL).
    pub src: Box<dyn ByteSource + Sync>,
    /// Its GGUF header.
    pub header: GgufHeader,
    /// The model it describes.
    pub desc: ModelDesc,
}

/// Reads the header and builds the model description.
///
/// # Errors
/// When the file cannot be read, is not a valid GGUF, or describes an unsupported model.
pub fn open(model: &str) -> Result<ModelFile> {
    let src: Box<dyn ByteSource + Sync> =
        if model.starts_with("http://") || model.starts_with("https://") {
            Box::new(HttpSource::open(model)?)
        } else {
            Box::new(FileSource::open(std::path::Path::new(model))?)
        };
    let header = read_gguf_header(src.as_ref()).with_context(|| format!("reading {model}"))?;
    let rope_freqs = match header.tensor("rope_freqs.weight") {
        Some(_) => Some(read_tensor_f32(src.as_ref(), &header, "rope_freqs.weight")?),
        None => None,
    };
    let desc =
        ModelDesc::from_gguf(&header, rope_freqs).with_context(|| format!("model {model}"))?;
    Ok(ModelFile { src, header, desc })
}

/// A model ready to run.
pub struct Loaded {
    /// The opened file.
    pub file: ModelFile,
    /// Its tokenizer.
    pub tokenizer: Tokenizer,
    /// The GPU engine with the weights loaded.
    pub engine: Engine,
}

/// Opens `model` (a path or an `http(s)://` URL), creates the GPU engine and streams the weights in, with a progress bar on stderr
/// unless `quiet`.
///
/// # Errors
/// Everything [`open`] reports, tokenizer errors, no GPU, a model too large for the device, read errors.
pub fn load(model: &str, opts: EngineOptions, quiet: bool) -> Result<Loaded> {
    let file = open(model)?;
    let tokenizer = Tokenizer::from_gguf(&file.header).context("building the tokenizer")?;
    let gpu = pollster::block_on(Gpu::new(GpuOptions::default()))?;
    let mut engine = pollster::block_on(Engine::new(gpu, file.desc.clone(), &file.header, opts))?;
    let names: Vec<String> = file
        .desc
        .expected_tensors()
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    let indices: Vec<usize> = file
        .header
        .tensors
        .iter()
        .enumerate()
        .filter(|(_, t)| names.contains(&t.name))
        .map(|(i, _)| i)
        .collect();
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
    stream_tensors(
        file.src.as_ref(),
        &file.header,
        &indices,
        DEFAULT_CHUNK_BYTES,
        DEFAULT_PARALLEL,
        engine.weights_mut(),
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    )
    .with_context(|| format!("loading weights from {}", file.src.name()))?;
    engine.finish_upload()?;
    bar.finish_and_clear();
    Ok(Loaded {
        file,
        tokenizer,
        engine,
    })
}
