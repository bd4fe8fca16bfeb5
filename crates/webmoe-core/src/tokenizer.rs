//! Tokenizer built from GGUF metadata (or a `tokenizer.json`) on the Hugging Face `tokenizers` crate.
//!
//! `tokenizer.ggml.model = gpt2` becomes a byte-level BPE with the pre-tokenizer regexes llama.cpp uses for
//! `tokenizer.ggml.pre`; `llama` (SentencePiece) becomes a byte-fallback BPE whose merges are ranked by
//! the merged piece's score, as llama.cpp's SPM tokenizer does. Control tokens are special: they are
//! recognised in template text but not in user content ([`Tokenizer::encode`] with `parse_special`).

use crate::error::TokenizerError;
use crate::gguf::GgufHeader;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
};

const GPT2_REGEX: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const LLAMA3_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Pre-tokenizer regexes (applied in order, each splitting off its matches) for a `tokenizer.ggml.pre`
/// value, following llama.cpp's `llama_vocab::impl::load`.
fn pre_regexes(pre: &str) -> Option<(Vec<&'static str>, bool)> {
    // (regexes, ignore_merges)
    Some(match pre {
        "default" | "gpt2" | "gpt-2" | "olmo" | "jais" | "phi-2" | "stablelm2" | "mpt" => {
            (vec![GPT2_REGEX], false)
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "dbrx" | "smaug-bpe" | "pixtral" => (
            vec![LLAMA3_REGEX],
            pre != "dbrx" && pre != "smaug-bpe" && pre != "pixtral",
        ),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
            (vec![r"\p{N}", GPT2_REGEX], false)
        }
        "qwen2" | "deepseek-r1-qwen" | "megrez" => (vec![QWEN2_REGEX], false),
        _ => return None,
    })
}

/// Token-id facts a generator needs.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecialTokens {
    /// Beginning-of-sequence token.
    pub bos: Option<u32>,
    /// Prepend `bos` when encoding a prompt.
    pub add_bos: bool,
    /// Every end-of-generation token (EOS, EOT and known end-of-turn control tokens).
    pub eog: Vec<u32>,
    /// Text of the BOS and EOS tokens (chat templates use them).
    pub bos_text: String,
    /// Text of the EOS token.
    pub eos_text: String,
}

/// A tokenizer with llama.cpp's special-token behaviour.
#[derive(Clone)]
pub struct Tokenizer {
    with_special: tokenizers::Tokenizer,
    plain: tokenizers::Tokenizer,
    /// Special ids and flags.
    pub special: SpecialTokens,
    /// Chat template from the model (`tokenizer.chat_template`), if any.
    pub chat_template: Option<String>,
}

/// Control-token texts that end a turn (llama.cpp treats these as end-of-generation).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<EOT>",
    "<|eom_id|>",
    "<|eot|>",
    "<|end_of_text|>",
];

/// Parses a `tokenizer.json`. The tokenizers crate panics on some malformed files (an `unwrap` in its
/// decoder deserialization, found by fuzzing): that panic is caught and reported as an invalid file.
fn parse_tokenizer_json(json: &str) -> Result<tokenizers::Tokenizer, TokenizerError> {
    // Invalid JSON never reaches the tokenizers library: in WebAssembly a panic aborts rather than
    // unwinds, so the catch below holds only natively.
    serde_json::from_str::<serde::de::IgnoredAny>(json)
        .map_err(|e| build_err(format!("tokenizer.json is not valid JSON: {e}")))?;
    match std::panic::catch_unwind(|| json.parse::<tokenizers::Tokenizer>()) {
        Ok(r) => r.map_err(build_err),
        Err(_) => Err(build_err(
            "invalid tokenizer.json (the tokenizers library rejected its structure)",
        )),
    }
}

/// `tok` with its BPE word cache off. The tokenizers library keeps that cache in a per-thread map
/// keyed by each BPE instance's id and never removes an instance's entry, not even when the
/// instance is dropped: every tokenizer built (a model loaded, a fuzz input) kept up to 10,000
/// words alive for the life of the thread (found by the `chat_template` fuzz target as memory
/// growing across executions). Without the cache a word is merged each time it is seen, which is
/// cheap next to a forward pass.
fn without_bpe_cache(mut tok: tokenizers::Tokenizer) -> tokenizers::Tokenizer {
    if let tokenizers::models::ModelWrapper::BPE(bpe) = tok.get_model() {
        let mut bpe = bpe.clone();
        bpe.resize_cache(0);
        tok.with_model(bpe);
    }
    tok
}

fn build_err(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Build(e.to_string())
}

impl Tokenizer {
    /// Builds the tokenizer described by GGUF metadata.
    ///
    /// # Errors
    /// [`TokenizerError::Build`] when the tokenizer model or pre-tokenizer is unknown, or the vocabulary
    /// arrays are missing or inconsistent.
    pub fn from_gguf(h: &GgufHeader) -> Result<Self, TokenizerError> {
        let str_key = |k: &str| h.get(k).and_then(|v| v.as_str());
        let model = str_key("tokenizer.ggml.model")
            .ok_or_else(|| build_err("tokenizer.ggml.model is missing"))?;
        let tokens = h
            .get("tokenizer.ggml.tokens")
            .and_then(|v| v.as_str_array())
            .ok_or_else(|| build_err("tokenizer.ggml.tokens is missing"))?;
        let n = tokens.len();
        if n == 0 || n > crate::model::MAX_VOCAB {
            return Err(build_err(format!(
                "tokenizer.ggml.tokens has {n} tokens (1..={} accepted)",
                crate::model::MAX_VOCAB
            )));
        }
        let types: Vec<i64> = match h
            .get("tokenizer.ggml.token_type")
            .and_then(|v| v.as_num_array())
        {
            Some(t) if t.len() == n => t.iter().map(|&x| x as i64).collect(),
            Some(t) => {
                return Err(build_err(format!(
                    "token_type has {} entries for {n} tokens",
                    t.len()
                )))
            }
            None => vec![1; n],
        };
        let id = |k: &str| {
            h.get(k)
                .and_then(|v| v.as_u64())
                .map(|v| v as u32)
                .filter(|&v| (v as usize) < n)
        };
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();

        let (mut tok, default_add_bos) = match model {
            "gpt2" => {
                let pre = str_key("tokenizer.ggml.pre").unwrap_or("default");
                let (regexes, ignore_merges) = pre_regexes(pre).ok_or_else(|| {
                    build_err(format!(
                        "unknown pre-tokenizer {pre:?} (tokenizer.ggml.pre)"
                    ))
                })?;
                let merges_raw = h
                    .get("tokenizer.ggml.merges")
                    .and_then(|v| v.as_str_array())
                    .ok_or_else(|| build_err("tokenizer.ggml.merges is missing"))?;
                let mut merges = Vec::with_capacity(merges_raw.len());
                for m in merges_raw {
                    let (a, b) = m
                        .split_once(' ')
                        .ok_or_else(|| build_err(format!("malformed merge {m:?}")))?;
                    merges.push((a.to_string(), b.to_string()));
                }
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .ignore_merges(ignore_merges)
                    .build()
                    .map_err(build_err)?;
                let mut tok = tokenizers::Tokenizer::new(bpe);
                let mut pres: Vec<PreTokenizerWrapper> = Vec::new();
                for r in regexes {
                    pres.push(
                        Split::new(
                            SplitPattern::Regex(r.to_string()),
                            SplitDelimiterBehavior::Isolated,
                            false,
                        )
                        .map_err(build_err)?
                        .into(),
                    );
                }
                pres.push(
                    tokenizers::pre_tokenizers::byte_level::ByteLevel::new(false, false, false)
                        .into(),
                );
                tok.with_pre_tokenizer(Some(PreSequence::new(pres)));
                tok.with_decoder(Some(ByteLevel::default()));
                (
                    tok,
                    matches!(pre, "llama3" | "llama-v3" | "llama-bpe" | "falcon3"),
                )
            }
            "llama" => {
                let scores = h
                    .get("tokenizer.ggml.scores")
                    .and_then(|v| v.as_num_array())
                    .ok_or_else(|| build_err("tokenizer.ggml.scores is missing"))?;
                if scores.len() != n {
                    return Err(build_err(format!(
                        "scores has {} entries for {n} tokens",
                        scores.len()
                    )));
                }
                let merges = spm_merges(tokens, &types, scores, &vocab)?;
                let unk = id("tokenizer.ggml.unknown_token_id")
                    .map(|i| tokens[i as usize].clone())
                    .unwrap_or_else(|| "<unk>".into());
                let bpe = BPE::builder()
                    .vocab_and_merges(vocab, merges)
                    .unk_token(unk)
                    .fuse_unk(true)
                    .byte_fallback(true)
                    .build()
                    .map_err(build_err)?;
                let mut tok = tokenizers::Tokenizer::new(bpe);
                let add_space = h
                    .get("tokenizer.ggml.add_space_prefix")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(true);
                let mut norms: Vec<NormalizerWrapper> = Vec::new();
                if add_space {
                    norms.push(Prepend::new("▁".into()).into());
                }
                norms.push(Replace::new(" ", "▁").map_err(build_err)?.into());
                tok.with_normalizer(Some(NormalizerSequence::new(norms)))
                    .map_err(build_err)?;
                let mut decs: Vec<DecoderWrapper> = vec![
                    Replace::new("▁", " ").map_err(build_err)?.into(),
                    ByteFallback::new().into(),
                    Fuse::new().into(),
                ];
                if add_space {
                    decs.push(Strip::new(' ', 1, 0).into());
                }
                tok.with_decoder(Some(DecoderSequence::new(decs)));
                (tok, true)
            }
            other => {
                return Err(build_err(format!(
                    "unknown tokenizer model {other:?} (webmoe reads gpt2 and llama)"
                )))
            }
        };

        // Control tokens are special (matched only when parsing specials); user-defined tokens always match.
        let control: Vec<AddedToken> = (0..n)
            .filter(|&i| types[i] == 3)
            .map(|i| AddedToken::from(tokens[i].clone(), true))
            .collect();
        let user: Vec<AddedToken> = (0..n)
            .filter(|&i| types[i] == 4)
            .map(|i| AddedToken::from(tokens[i].clone(), false))
            .collect();
        tok.add_special_tokens(control).map_err(build_err)?;
        tok.add_tokens(user).map_err(build_err)?;

        let bos = id("tokenizer.ggml.bos_token_id");
        let eos = id("tokenizer.ggml.eos_token_id");
        let mut eog: Vec<u32> = [
            eos,
            id("tokenizer.ggml.eot_token_id"),
            id("tokenizer.ggml.eom_token_id"),
        ]
        .into_iter()
        .flatten()
        .collect();
        for (i, t) in tokens.iter().enumerate() {
            if types[i] == 3 && EOG_TEXTS.contains(&t.as_str()) && !eog.contains(&(i as u32)) {
                eog.push(i as u32);
            }
        }
        let special = SpecialTokens {
            bos,
            add_bos: h
                .get("tokenizer.ggml.add_bos_token")
                .and_then(|v| v.as_bool())
                .unwrap_or(default_add_bos)
                && bos.is_some(),
            eog,
            bos_text: bos.map(|i| tokens[i as usize].clone()).unwrap_or_default(),
            eos_text: eos.map(|i| tokens[i as usize].clone()).unwrap_or_default(),
        };
        let chat_template = h
            .get("tokenizer.chat_template")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        Ok(Self::from_parts(tok, special, chat_template))
    }

    /// Builds from a Hugging Face `tokenizer.json` plus the special-token facts.
    ///
    /// # Errors
    /// [`TokenizerError::Build`] when the JSON is not a valid tokenizer.
    pub fn from_json(
        json: &str,
        special: SpecialTokens,
        chat_template: Option<String>,
    ) -> Result<Self, TokenizerError> {
        let tok = parse_tokenizer_json(json)?;
        Ok(Self::from_parts(tok, special, chat_template))
    }

    /// Builds from a Hugging Face model folder's files: `tokenizer.json`, and when present
    /// `tokenizer_config.json` (BOS/EOS text, `add_bos_token`, `chat_template`) and
    /// `generation_config.json` (EOS ids). `config_bos`/`config_eos` come from `config.json`.
    ///
    /// # Errors
    /// [`TokenizerError::Build`] when `tokenizer.json` is not a valid tokenizer.
    pub fn from_hf(
        tokenizer_json: &str,
        tokenizer_config: Option<&serde_json::Value>,
        generation_config: Option<&serde_json::Value>,
        config_bos: Option<u32>,
        config_eos: &[u32],
    ) -> Result<Self, TokenizerError> {
        use serde_json::Value;
        let tok = parse_tokenizer_json(tokenizer_json)?;
        let text = |k: &str| -> Option<String> {
            match tokenizer_config?.get(k)? {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
                _ => None,
            }
        };
        let bos_text = text("bos_token");
        let eos_text = text("eos_token");
        let bos = bos_text
            .as_deref()
            .and_then(|t| tok.token_to_id(t))
            .or_else(|| {
                generation_config
                    .and_then(|g| g.get("bos_token_id")?.as_u64())
                    .map(|x| x as u32)
            })
            .or(config_bos);
        let mut eog: Vec<u32> = eos_text
            .as_deref()
            .and_then(|t| tok.token_to_id(t))
            .into_iter()
            .collect();
        for id in crate::hf::token_ids(generation_config.and_then(|g| g.get("eos_token_id")))
            .into_iter()
            .chain(config_eos.iter().copied())
        {
            if !eog.contains(&id) {
                eog.push(id);
            }
        }
        for t in EOG_TEXTS {
            if let Some(id) = tok.token_to_id(t) {
                if !eog.contains(&id) {
                    eog.push(id);
                }
            }
        }
        // BOS is prepended when the tokenizer config says so, or its post-processor adds it.
        let post_adds_bos = bos_text.as_deref().is_some_and(|b| {
            serde_json::from_str::<Value>(tokenizer_json)
                .ok()
                .and_then(|v| v.get("post_processor").map(|p| p.to_string().contains(b)))
                .unwrap_or(false)
        });
        let add_bos = tokenizer_config
            .and_then(|c| c.get("add_bos_token")?.as_bool())
            .unwrap_or(post_adds_bos);
        let special = SpecialTokens {
            bos,
            add_bos: add_bos && bos.is_some(),
            eog,
            bos_text: bos.and_then(|i| tok.id_to_token(i)).unwrap_or_default(),
            eos_text: eos_text.unwrap_or_default(),
        };
        let template = tokenizer_config
            .and_then(|c| c.get("chat_template")?.as_str())
            .map(str::to_string);
        Ok(Self::from_parts(tok, special, template))
    }

    /// The tokenizer as Hugging Face `tokenizer.json` text.
    ///
    /// # Errors
    /// [`TokenizerError::Build`] if serialization fails.
    pub fn to_json(&self) -> Result<String, TokenizerError> {
        self.with_special.to_string(false).map_err(build_err)
    }

    fn from_parts(
        tok: tokenizers::Tokenizer,
        special: SpecialTokens,
        chat_template: Option<String>,
    ) -> Self {
        let tok = without_bpe_cache(tok);
        let mut plain = tok.clone();
        plain.set_encode_special_tokens(true);
        Tokenizer {
            with_special: tok,
            plain,
            special,
            chat_template,
        }
    }

    /// Encodes `text`. With `parse_special`, control-token strings become their token; without, they are
    /// tokenized as plain text. `add_bos` prepends BOS when the model wants it.
    ///
    /// # Errors
    /// [`TokenizerError::Encode`] if `text` is longer than [`MAX_TEXT_BYTES`] or the underlying
    /// tokenizer fails.
    pub fn encode(
        &self,
        text: &str,
        parse_special: bool,
        add_bos: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        if text.len() > MAX_TEXT_BYTES {
            return Err(TokenizerError::Encode(format!(
                "the text is {} bytes, more than the {MAX_TEXT_BYTES} one prompt may hold (about \
                 half a million tokens, more than any context this engine runs)",
                text.len()
            )));
        }
        let tok = if parse_special {
            &self.with_special
        } else {
            &self.plain
        };
        let enc = tok
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let mut ids = Vec::with_capacity(enc.get_ids().len() + 1);
        if add_bos && self.special.add_bos {
            ids.extend(self.special.bos);
        }
        ids.extend_from_slice(enc.get_ids());
        Ok(ids)
    }

    /// Decodes ids to text (special tokens are kept as their text).
    ///
    /// # Errors
    /// [`TokenizerError::Encode`] if an id is outside the vocabulary.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.with_special
            .decode(ids, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))
    }

    /// Number of tokens in the vocabulary (including added tokens).
    pub fn vocab_size(&self) -> usize {
        self.with_special.get_vocab_size(true)
    }

    /// Whether `id` ends generation.
    pub fn is_eog(&self, id: u32) -> bool {
        self.special.eog.contains(&id)
    }
}

/// Merges for a SentencePiece vocabulary: every split of a normal piece into two normal pieces, ranked by
/// the score of the merged piece (highest first), then by the merged piece's id.
/// Most bytes of merge strings a SentencePiece vocabulary may imply (real ones need a few MB; a hostile
/// `a`, `aa`, … `a`×3000 needs gigabytes).
/// Longest text one encoding takes. Tokenizing costs about 200 bytes of memory per byte of text
/// (per-token strings and offsets), so this bounds one prompt's tokenization to a few hundred MB.
pub const MAX_TEXT_BYTES: usize = 2 << 20;

const MAX_MERGE_BYTES: u64 = 256 << 20;

fn spm_merges(
    tokens: &[String],
    types: &[i64],
    scores: &[f64],
    vocab: &tokenizers::models::bpe::Vocab,
) -> Result<Vec<(String, String)>, TokenizerError> {
    let normal = |s: &str| vocab.get(s).is_some_and(|&i| types[i as usize] == 1);
    // Bound the work before doing it: every split point of a piece costs the piece's length.
    let cost: u64 = tokens
        .iter()
        .enumerate()
        .filter(|(i, _)| types[*i] == 1)
        .map(|(_, p)| p.chars().count().saturating_sub(1) as u64 * p.len() as u64)
        .fold(0u64, u64::saturating_add);
    if cost > MAX_MERGE_BYTES {
        return Err(build_err(format!(
            "the SentencePiece vocabulary implies {cost} bytes of merges, more than the {MAX_MERGE_BYTES} any real vocabulary needs"
        )));
    }
    let mut ranked: Vec<(f64, u32, String, String)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        if types[i] != 1 || piece.chars().count() < 2 {
            continue;
        }
        for (pos, _) in piece.char_indices().skip(1) {
            let (a, b) = piece.split_at(pos);
            if normal(a) && normal(b) {
                ranked.push((scores[i], i as u32, a.to_string(), b.to_string()));
            }
        }
    }
    ranked.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
    Ok(ranked.into_iter().map(|(_, _, a, b)| (a, b)).collect())
}

/// Incremental detokenizer: yields text only once it forms complete UTF-8 characters, decoding a short
/// window per token (as Hugging Face's `DecodeStream` does) instead of the whole sequence.
#[derive(Default)]
pub struct TextStream {
    ids: Vec<u32>,
    /// Start of the decode window: a position where the text so far was complete.
    prefix: usize,
    /// Tokens up to here have been emitted.
    read: usize,
    text: String,
}

impl TextStream {
    /// Adds a token and returns the new complete text, if any.
    ///
    /// # Errors
    /// [`TokenizerError::Encode`] if decoding fails.
    pub fn push(&mut self, tok: &Tokenizer, id: u32) -> Result<String, TokenizerError> {
        self.ids.push(id);
        // Decoding the same window start twice keeps decoder quirks at the start (e.g. SentencePiece's
        // leading-space strip) out of the difference.
        let before = tok.decode(&self.ids[self.prefix..self.read])?;
        let now = tok.decode(&self.ids[self.prefix..])?;
        if now.len() <= before.len()
            || now.ends_with('\u{FFFD}')
            || !now.is_char_boundary(before.len())
        {
            return Ok(String::new());
        }
        let new = now[before.len()..].to_string();
        self.prefix = self.read;
        self.read = self.ids.len();
        self.text.push_str(&new);
        Ok(new)
    }

    /// All text emitted so far.
    pub fn text(&self) -> &str {
        &self.text
    }
}
