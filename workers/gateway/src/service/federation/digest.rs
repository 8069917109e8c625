//! Streaming SHA-256 in the runtime's native code (`crypto.DigestStream`, a Workers API): hashing
//! an update in wasm is the slowest step of validating it, and the runtime hashes several times
//! faster. Falls back to hashing in wasm where the API is missing.

use edgeplane_core::ApiError;
use js_sys::{Array, Function, Promise, Reflect, Uint8Array};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

pub struct NativeSha256 {
    writer: JsValue,
    digest: Promise,
}

fn js_err(_: JsValue) -> ApiError {
    edgeplane_runtime::log::error("digest stream", "the runtime's DigestStream failed");
    ApiError::internal()
}

fn method(obj: &JsValue, name: &str) -> Result<Function, JsValue> {
    Reflect::get(obj, &JsValue::from_str(name))?.dyn_into::<Function>()
}

impl NativeSha256 {
    /// `None` when the runtime has no `crypto.DigestStream`.
    pub fn new() -> Option<Self> {
        let make = || -> Result<Self, JsValue> {
            let crypto = Reflect::get(&js_sys::global(), &JsValue::from_str("crypto"))?;
            let ctor = method(&crypto, "DigestStream")?;
            let stream = Reflect::construct(&ctor, &Array::of1(&JsValue::from_str("SHA-256")))?;
            let digest =
                Reflect::get(&stream, &JsValue::from_str("digest"))?.dyn_into::<Promise>()?;
            let writer = method(&stream, "getWriter")?.call0(&stream)?;
            Ok(Self { writer, digest })
        };
        make().ok()
    }

    pub async fn update(&self, bytes: &[u8]) -> Result<(), ApiError> {
        let write = method(&self.writer, "write").map_err(js_err)?;
        let p = write
            .call1(&self.writer, &Uint8Array::from(bytes))
            .map_err(js_err)?
            .dyn_into::<Promise>()
            .map_err(|_| ApiError::internal())?;
        JsFuture::from(p).await.map(|_| ()).map_err(js_err)
    }

    /// The lower-case hex digest of everything written.
    pub async fn finish(self) -> Result<String, ApiError> {
        let close = method(&self.writer, "close").map_err(js_err)?;
        let p = close
            .call0(&self.writer)
            .map_err(js_err)?
            .dyn_into::<Promise>()
            .map_err(|_| ApiError::internal())?;
        JsFuture::from(p).await.map_err(js_err)?;
        let buf = JsFuture::from(self.digest).await.map_err(js_err)?;
        Ok(hex::encode(Uint8Array::new(&buf).to_vec()))
    }
}
