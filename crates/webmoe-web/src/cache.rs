//! The persistent chunk cache (browser Cache API). A model's finished chunks are stored under keys made
//! of its URL, its validator (ETag or Last-Modified, plus its size) and the chunk's byte range, so a
//! reload reads them locally, an interrupted download resumes with the first missing chunk, and a file
//! that changed on the server never mixes with old chunks. A small manifest per URL records what is
//! cached, for [`list_cached_models`] and [`delete_cached_model`].

use crate::js::describe;
use crate::source::Remote;
use js_sys::{Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

const CACHE_NAME: &str = "webmoe-weights-v1";
const KEY_ROOT: &str = "https://webmoe.cache/";

/// What the cache holds for one model URL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Model URL.
    pub url: String,
    /// Validator of the cached bytes.
    pub validator: String,
    /// File size.
    pub size: u64,
    /// Bytes of tensor data cached.
    pub cached_bytes: u64,
    /// Bytes of tensor data the model needs.
    pub total_bytes: u64,
    /// Every chunk is cached.
    pub complete: bool,
}

/// An open cache, or none (no Cache API here, e.g. not a secure context).
pub struct ChunkCache {
    cache: web_sys::Cache,
}

fn enc(s: &str) -> String {
    String::from(js_sys::encode_uri_component(s))
}

fn manifest_key(url: &str) -> String {
    format!("{KEY_ROOT}model/{}", enc(url))
}

fn chunk_prefix(url: &str) -> String {
    format!("{KEY_ROOT}chunk/{}/", enc(url))
}

fn chunk_key(r: &Remote, offset: u64, len: u64) -> String {
    format!(
        "{}{}/{}-{}",
        chunk_prefix(&r.url),
        enc(&format!("{}|{}", r.validator, r.size)),
        offset,
        len
    )
}

async fn open_cache() -> Result<Option<web_sys::Cache>, String> {
    let caches = Reflect::get(&js_sys::global(), &"caches".into()).map_err(|e| describe(&e))?;
    if caches.is_undefined() || caches.is_null() {
        return Ok(None);
    }
    let caches: web_sys::CacheStorage = caches.unchecked_into();
    let c = JsFuture::from(caches.open(CACHE_NAME))
        .await
        .map_err(|e| describe(&e))?;
    Ok(Some(c.unchecked_into()))
}

async fn keys(cache: &web_sys::Cache) -> Result<Vec<String>, String> {
    let arr: js_sys::Array = JsFuture::from(cache.keys())
        .await
        .map_err(|e| describe(&e))?
        .unchecked_into();
    Ok(arr
        .iter()
        .map(|r| r.unchecked_into::<web_sys::Request>().url())
        .collect())
}

impl ChunkCache {
    /// Opens the cache; `None` when this context has no Cache API or it cannot be opened.
    pub async fn open() -> Option<ChunkCache> {
        open_cache()
            .await
            .ok()
            .flatten()
            .map(|cache| ChunkCache { cache })
    }

    /// A cached chunk, if present and of the right length.
    pub async fn get(&self, r: &Remote, offset: u64, len: u64) -> Option<Uint8Array> {
        let hit = JsFuture::from(self.cache.match_with_str(&chunk_key(r, offset, len)))
            .await
            .ok()?;
        if hit.is_undefined() {
            return None;
        }
        let resp: web_sys::Response = hit.unchecked_into();
        let buf = JsFuture::from(resp.array_buffer().ok()?).await.ok()?;
        let bytes = Uint8Array::new(&buf);
        (bytes.length() as u64 == len).then_some(bytes)
    }

    /// Stores a chunk.
    ///
    /// # Errors
    /// The browser's message (typically a `QuotaExceededError`).
    pub async fn put(&self, r: &Remote, offset: u64, bytes: &Uint8Array) -> Result<(), String> {
        let key = chunk_key(r, offset, bytes.length() as u64);
        let resp =
            web_sys::Response::new_with_opt_buffer_source(Some(bytes)).map_err(|e| describe(&e))?;
        JsFuture::from(self.cache.put_with_str(&key, &resp))
            .await
            .map_err(|e| {
                let name = Reflect::get(&e, &"name".into())
                    .ok()
                    .and_then(|n| n.as_string())
                    .unwrap_or_default();
                format!("{name} {}", describe(&e)).trim().to_string()
            })?;
        Ok(())
    }

    /// The manifest of `url`, if any.
    pub async fn manifest(&self, url: &str) -> Option<Manifest> {
        let hit = JsFuture::from(self.cache.match_with_str(&manifest_key(url)))
            .await
            .ok()?;
        if hit.is_undefined() {
            return None;
        }
        let resp: web_sys::Response = hit.unchecked_into();
        let text = JsFuture::from(resp.text().ok()?).await.ok()?.as_string()?;
        serde_json::from_str(&text).ok()
    }

    /// Writes the manifest of `m.url`.
    ///
    /// # Errors
    /// The browser's message.
    pub async fn set_manifest(&self, m: &Manifest) -> Result<(), String> {
        let text = serde_json::to_string(m).map_err(|e| e.to_string())?;
        let resp = web_sys::Response::new_with_opt_str(Some(&text)).map_err(|e| describe(&e))?;
        JsFuture::from(self.cache.put_with_str(&manifest_key(&m.url), &resp))
            .await
            .map_err(|e| describe(&e))?;
        Ok(())
    }

    /// Removes every chunk of `url` (whatever validator) and, unless `keep_manifest`, its manifest.
    ///
    /// # Errors
    /// The browser's message.
    pub async fn remove(&self, url: &str, keep_manifest: bool) -> Result<u32, String> {
        let prefix = chunk_prefix(url);
        let mut n = 0;
        for k in keys(&self.cache).await? {
            if k.starts_with(&prefix) || (!keep_manifest && k == manifest_key(url)) {
                JsFuture::from(self.cache.delete_with_str(&k))
                    .await
                    .map_err(|e| describe(&e))?;
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Lists the models in the cache: `[{ url, validator, size, cachedBytes, totalBytes, complete }]`.
///
/// # Errors
/// When the Cache API fails.
#[wasm_bindgen(js_name = listCachedModels)]
pub async fn list_cached_models() -> Result<JsValue, JsValue> {
    let Some(cache) = ChunkCache::open().await else {
        return Ok(js_sys::Array::new().into());
    };
    let mut out = Vec::new();
    for k in keys(&cache.cache)
        .await
        .map_err(|e| JsValue::from_str(&e))?
    {
        if let Some(enc_url) = k.strip_prefix(&format!("{KEY_ROOT}model/")) {
            let url = js_sys::decode_uri_component(enc_url)
                .map(String::from)
                .unwrap_or_default();
            if let Some(m) = cache.manifest(&url).await {
                out.push(m);
            }
        }
    }
    crate::js::to_js(&out)
}

/// Deletes everything cached for `url`; resolves to whether anything was there.
///
/// # Errors
/// When the Cache API fails.
#[wasm_bindgen(js_name = deleteCachedModel)]
pub async fn delete_cached_model(url: String) -> Result<bool, JsValue> {
    let Some(cache) = ChunkCache::open().await else {
        return Ok(false);
    };
    let n = cache
        .remove(&url, false)
        .await
        .map_err(|e| JsValue::from_str(&e))?;
    Ok(n > 0)
}
