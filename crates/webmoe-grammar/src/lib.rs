//! Structured output: what a request may generate (a JSON schema, any JSON object, a Lark or GBNF
//! grammar, a regex) becomes a token mask per step, which the sampler applies on the GPU or the CPU.
//! The masks come from llguidance (Microsoft's grammar engine, also behind LiteRT-LM and
//! Transformers.js): an Earley parser over a token trie, fast enough to run between decode steps, with
//! JSON-schema and Lark front ends, and it builds for wasm32 without threads. GBNF (llama.cpp's
//! grammar format) is translated to its Lark dialect by [`gbnf`].

pub mod gbnf;
mod spec;
pub mod tool_calls;
pub mod tools;
mod vocab;

pub use spec::{Spec, SpecError};
pub use tool_calls::{Answer, CallReader, Piece, ToolCall};
pub use tools::{ToolChoice, Tools};

use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use std::sync::Arc;
use thiserror::Error;
use toktrie::TokEnv;
use webmoe_core::generate::Constraint;
use webmoe_core::tokenizer::Tokenizer;

/// Errors of structured output.
#[derive(Debug, Error)]
pub enum GrammarError {
    /// The tokenizer's vocabulary could not be turned into token bytes.
    #[error("structured output is not available for this tokenizer: {0}")]
    Vocabulary(String),
    /// The schema, grammar or regex is invalid or uses what the engine does not support.
    #[error("invalid {kind}: {message}")]
    Invalid {
        /// `JSON schema`, `grammar`, `regex`.
        kind: &'static str,
        /// What the grammar engine said.
        message: String,
    },
}

/// The grammar engine for one tokenizer (built once per model, shared by its requests).
pub struct Grammars {
    factory: ParserFactory,
}

impl Grammars {
    /// Prepares constrained decoding for `tok`: the bytes of every token in a trie, the end tokens.
    ///
    /// # Errors
    /// [`GrammarError::Vocabulary`] when the tokenizer's decoder is neither byte-level BPE nor
    /// SentencePiece byte fallback.
    pub fn new(tok: &Tokenizer) -> Result<Self, GrammarError> {
        let env: TokEnv = Arc::new(vocab::Vocabulary::new(tok)?);
        let mut factory =
            ParserFactory::new_simple(&env).map_err(|e| GrammarError::Vocabulary(e.to_string()))?;
        factory.quiet();
        Ok(Grammars { factory })
    }

    /// A constraint for one generation.
    ///
    /// # Errors
    /// [`GrammarError::Invalid`] naming what is wrong with the schema, grammar or regex.
    pub fn constraint(&self, spec: &Spec) -> Result<Structured, GrammarError> {
        let kind = spec.kind();
        let invalid = |message: String| GrammarError::Invalid { kind, message };
        let grammar: TopLevelGrammar = match spec {
            Spec::JsonObject => TopLevelGrammar::from_json_schema(json_options(
                serde_json::json!({ "type": "object" }),
                true,
            )),
            Spec::JsonSchema { schema, strict } => {
                if !schema.is_object() && !schema.is_boolean() {
                    return Err(invalid("a schema must be a JSON object".into()));
                }
                TopLevelGrammar::from_json_schema(json_options(schema.clone(), *strict))
            }
            Spec::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
            Spec::Gbnf(text) => TopLevelGrammar::from_lark(gbnf::to_lark(text).map_err(invalid)?),
            Spec::Regex(rx) => TopLevelGrammar::from_regex(rx),
        };
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| invalid(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(invalid(e));
        }
        Ok(Structured {
            matcher,
            mask: Vec::new(),
        })
    }
}

/// JSON output without free whitespace (a small model given the choice may emit newlines forever), in
/// the compact separators most JSON uses; `strict: false` ignores keywords the engine lacks instead of
/// refusing the schema.
fn json_options(mut schema: serde_json::Value, strict: bool) -> serde_json::Value {
    if let Some(o) = schema.as_object_mut() {
        let mut options = serde_json::json!({
            "whitespace_flexible": false,
            "item_separator": ", ",
            "key_separator": ": ",
            "lenient": !strict,
        });
        if let Some(theirs) = o.get("x-guidance") {
            llguidance::json_merge(&mut options, theirs);
        }
        o.insert("x-guidance".into(), options);
    }
    schema
}

/// One generation's constraint (implements the generation loop's [`Constraint`]).
pub struct Structured {
    matcher: Matcher,
    mask: Vec<u32>,
}

impl Constraint for Structured {
    fn mask(&mut self) -> Result<&[u32], String> {
        let m = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| e.to_string())?;
        self.mask.clear();
        self.mask.extend_from_slice(m.as_slice());
        Ok(&self.mask)
    }

    fn commit(&mut self, id: u32) -> Result<(), String> {
        self.matcher.consume_token(id).map_err(|e| e.to_string())
    }

    fn finished(&self) -> bool {
        self.matcher.is_stopped()
    }
}
