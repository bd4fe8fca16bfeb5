//! The tokenizer as llguidance sees it: the bytes of every token (from the `tokenizer.json` form of
//! the tokenizer, byte-level BPE or SentencePiece with byte fallback) in a trie, the end-of-generation
//! tokens, and a way to tokenize text.

use crate::GrammarError;
use toktrie::{TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use webmoe_core::tokenizer::Tokenizer;

/// Token bytes and the tokenizer behind them.
pub struct Vocabulary {
    trie: TokTrie,
    tok: Tokenizer,
}

impl Vocabulary {
    /// Builds the trie of `tok`.
    ///
    /// # Errors
    /// [`GrammarError::Vocabulary`] for a decoder the token bytes cannot be read from.
    pub fn new(tok: &Tokenizer) -> Result<Self, GrammarError> {
        let bad = |e: String| GrammarError::Vocabulary(e);
        let json = tok.to_json().map_err(|e| bad(e.to_string()))?;
        let json: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| bad(e.to_string()))?;
        let mut words =
            llguidance::token_bytes_from_tokenizer_json(&json).map_err(|e| bad(e.to_string()))?;
        let n = words.len().max(tok.vocab_size());
        words.resize(n, Vec::new());
        let eog = &tok.special.eog;
        let Some(&eos) = eog.first() else {
            return Err(bad(
                "the tokenizer has no end-of-generation token, so an answer could never end".into(),
            ));
        };
        let info = TokRxInfo {
            tok_bos: tok.special.bos,
            ..TokRxInfo::new(n as u32, eos)
        };
        let trie = TokTrie::from(&info, &words).with_eos_tokens(eog);
        Ok(Vocabulary {
            trie,
            tok: tok.clone(),
        })
    }
}

impl TokenizerEnv for Vocabulary {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        // Grammar literals are text; bytes that are not UTF-8 fall back to the trie's greedy split.
        match std::str::from_utf8(s) {
            Ok(text) => self
                .tok
                .encode(text, false, false)
                .unwrap_or_else(|_| self.trie.greedy_tokenize(s)),
            Err(_) => self.trie.greedy_tokenize(s),
        }
    }
}
