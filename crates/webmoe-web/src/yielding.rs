//! The CPU backend computes a decode step without awaiting anything, so a generation would hold the
//! worker's event loop until it ends and `interrupt()` (a message to the worker) could never arrive.
//! [`Yielding`] gives the event loop a turn after every CPU step through a JS function that returns
//! a promise resolved by a fresh macrotask (a `MessageChannel` message in the worker: far cheaper than
//! `setTimeout`, which clamps to 4 ms).

use wasm_bindgen_futures::JsFuture;
use webmoe_core::generate::Backend;
use webmoe_core::kv::CachedTokens;
use webmoe_core::sampling::Draw;
use webmoe_engine::{AnyEngine, EngineError};

/// An engine that yields to the event loop after each CPU step.
pub struct Yielding<'a> {
    /// The engine.
    pub engine: &'a mut AnyEngine,
    /// `() => Promise<void>` resolved on the next macrotask (`None`: never yield).
    pub yield_fn: Option<js_sys::Function>,
}

impl Backend for Yielding<'_> {
    type Error = EngineError;

    fn pos(&self) -> usize {
        self.engine.pos()
    }

    fn max_context(&self) -> usize {
        self.engine.max_context()
    }

    fn model_context(&self) -> usize {
        self.engine.model_context()
    }

    fn reset(&mut self) {
        self.engine.reset();
    }

    fn cached(&self) -> &CachedTokens {
        self.engine.cached()
    }

    fn rewind(&mut self, n: usize) -> usize {
        self.engine.rewind(n)
    }

    async fn forward(
        &mut self,
        ids: &[u32],
        sample: Option<Draw<'_>>,
    ) -> Result<Option<u32>, EngineError> {
        let out = self.engine.forward(ids, sample).await;
        if let (Some(f), AnyEngine::Cpu(_) | AnyEngine::External(_)) =
            (&self.yield_fn, &*self.engine)
        {
            if let Ok(p) = f.call0(&wasm_bindgen::JsValue::NULL) {
                let _ = JsFuture::from(js_sys::Promise::from(p)).await;
            }
        }
        out
    }

    async fn logits(&self) -> Result<Vec<f32>, EngineError> {
        self.engine.logits().await
    }
}
