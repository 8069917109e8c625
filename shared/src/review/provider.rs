//! LLM provider wire formats (streaming off): Anthropic Messages, OpenAI Chat Completions (and
//! any compatible endpoint), Google Gemini `generateContent`, plus the embeddings endpoints of
//! those that have one. The API key is never part of a [`Call`]: [`auth_header`] names the one
//! header it travels in, added by the worker as the last step.

use serde_json::{json, Value};

use crate::review::config::ProviderKind;
use crate::review::http::{encode_path, Call};

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The header the provider expects its key in. Gemini's key goes in `x-goog-api-key`, never in
/// the query string (URLs end up in logs).
pub fn auth_header(kind: ProviderKind, key: &str) -> (&'static str, String) {
    match kind {
        ProviderKind::Anthropic => ("x-api-key", key.to_owned()),
        ProviderKind::Gemini => ("x-goog-api-key", key.to_owned()),
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
            ("authorization", format!("Bearer {key}"))
        }
    }
}

fn gemini_model(model: &str) -> String {
    encode_path(model.strip_prefix("models/").unwrap_or(model))
}

/// The most a chat completion's answer may hold: the findings of one review, with room for
/// verbose providers.
pub const CHAT_RESPONSE_LIMIT: usize = 4 * 1024 * 1024;
/// The most one embeddings answer may hold: a batch of 32 vectors of up to 8192 dimensions as
/// JSON numbers.
pub const EMBEDDINGS_RESPONSE_LIMIT: usize = 8 * 1024 * 1024;

pub fn chat(
    kind: ProviderKind,
    base_url: &str,
    model: &str,
    system: &str,
    user: &str,
    max_output_tokens: u32,
) -> Call {
    let base = base_url.trim_end_matches('/');
    let call = match kind {
        ProviderKind::Anthropic => Call::post_json(
            format!("{base}/messages"),
            &json!({
                "model": model,
                "max_tokens": max_output_tokens,
                "system": system,
                "messages": [{"role": "user", "content": user}],
                "temperature": 0,
                "stream": false,
            }),
        )
        .header("anthropic-version", ANTHROPIC_VERSION),
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
            // OpenAI's newer models take `max_completion_tokens`; compatible servers mostly know
            // only `max_tokens`.
            let limit_field = if kind == ProviderKind::OpenAi {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            let mut body = json!({
                "model": model,
                "messages": [
                    {"role": "system", "content": system},
                    {"role": "user", "content": user}
                ],
                "stream": false,
                "response_format": {"type": "json_object"},
            });
            body[limit_field] = json!(max_output_tokens);
            if kind == ProviderKind::OpenAiCompatible {
                body["temperature"] = json!(0);
            }
            Call::post_json(format!("{base}/chat/completions"), &body)
        }
        ProviderKind::Gemini => Call::post_json(
            format!("{base}/models/{}:generateContent", gemini_model(model)),
            &json!({
                "systemInstruction": {"parts": [{"text": system}]},
                "contents": [{"role": "user", "parts": [{"text": user}]}],
                "generationConfig": {
                    "temperature": 0,
                    "maxOutputTokens": max_output_tokens,
                    "responseMimeType": "application/json",
                },
            }),
        ),
    };
    call.response_limit(CHAT_RESPONSE_LIMIT)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub text: String,
    pub input_tokens: Option<u32>,
    pub output_tokens: Option<u32>,
    /// The provider stopped at the output limit: the JSON may be cut short.
    pub truncated: bool,
}

fn u32_at(v: &Value, path: &[&str]) -> Option<u32> {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))?
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
}

/// Parses a 2xx body. Errors describe the shape problem, never echo the body.
pub fn parse_chat(kind: ProviderKind, body: &[u8]) -> Result<Completion, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| "the provider's response is not JSON".to_owned())?;
    match kind {
        ProviderKind::Anthropic => {
            let blocks = v
                .get("content")
                .and_then(Value::as_array)
                .ok_or("no `content` in the response")?;
            let text: String = blocks
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|b| b.get("text").and_then(Value::as_str))
                .collect();
            Ok(Completion {
                text,
                input_tokens: u32_at(&v, &["usage", "input_tokens"]),
                output_tokens: u32_at(&v, &["usage", "output_tokens"]),
                truncated: v.get("stop_reason").and_then(Value::as_str) == Some("max_tokens"),
            })
        }
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
            let choice = v
                .get("choices")
                .and_then(|c| c.get(0))
                .ok_or("no `choices` in the response")?;
            let text = choice
                .get("message")
                .and_then(|m| m.get("content"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            Ok(Completion {
                text,
                input_tokens: u32_at(&v, &["usage", "prompt_tokens"]),
                output_tokens: u32_at(&v, &["usage", "completion_tokens"]),
                truncated: choice.get("finish_reason").and_then(Value::as_str) == Some("length"),
            })
        }
        ProviderKind::Gemini => {
            let cand = v
                .get("candidates")
                .and_then(|c| c.get(0))
                .ok_or("no `candidates` in the response")?;
            let text: String = cand
                .get("content")
                .and_then(|c| c.get("parts"))
                .and_then(Value::as_array)
                .map(|parts| {
                    parts
                        .iter()
                        .filter_map(|p| p.get("text").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            Ok(Completion {
                text,
                input_tokens: u32_at(&v, &["usageMetadata", "promptTokenCount"]),
                output_tokens: u32_at(&v, &["usageMetadata", "candidatesTokenCount"]),
                truncated: cand.get("finishReason").and_then(Value::as_str) == Some("MAX_TOKENS"),
            })
        }
    }
}

/// The embeddings request for `inputs`, when the provider has an embeddings endpoint.
pub fn embeddings(
    kind: ProviderKind,
    base_url: &str,
    model: &str,
    inputs: &[&str],
) -> Option<Call> {
    let base = base_url.trim_end_matches('/');
    let call = match kind {
        ProviderKind::Anthropic => None,
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => Some(Call::post_json(
            format!("{base}/embeddings"),
            &json!({"model": model, "input": inputs, "encoding_format": "float"}),
        )),
        ProviderKind::Gemini => {
            let m = gemini_model(model);
            let full = format!("models/{}", model.strip_prefix("models/").unwrap_or(model));
            let requests: Vec<Value> = inputs
                .iter()
                .map(|t| json!({"model": full, "content": {"parts": [{"text": t}]}}))
                .collect();
            Some(Call::post_json(
                format!("{base}/models/{m}:batchEmbedContents"),
                &json!({"requests": requests}),
            ))
        }
    };
    call.map(|c| c.response_limit(EMBEDDINGS_RESPONSE_LIMIT))
}

/// Vectors in input order; the count must match.
pub fn parse_embeddings(
    kind: ProviderKind,
    body: &[u8],
    expected: usize,
) -> Result<Vec<Vec<f32>>, String> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|_| "the embeddings response is not JSON".to_owned())?;
    let to_vec = |a: &Value| -> Option<Vec<f32>> {
        a.as_array()?
            .iter()
            .map(|x| x.as_f64().map(|f| f as f32))
            .collect()
    };
    let vecs: Vec<Vec<f32>> = match kind {
        ProviderKind::Anthropic => return Err("anthropic has no embeddings endpoint".into()),
        ProviderKind::OpenAi | ProviderKind::OpenAiCompatible => {
            let mut data: Vec<(u64, Vec<f32>)> = v
                .get("data")
                .and_then(Value::as_array)
                .ok_or("no `data` in the embeddings response")?
                .iter()
                .enumerate()
                .map(|(i, d)| {
                    Some((
                        d.get("index").and_then(Value::as_u64).unwrap_or(i as u64),
                        to_vec(d.get("embedding")?)?,
                    ))
                })
                .collect::<Option<_>>()
                .ok_or("malformed embedding")?;
            data.sort_by_key(|(i, _)| *i);
            data.into_iter().map(|(_, v)| v).collect()
        }
        ProviderKind::Gemini => v
            .get("embeddings")
            .and_then(Value::as_array)
            .ok_or("no `embeddings` in the response")?
            .iter()
            .map(|e| to_vec(e.get("values")?))
            .collect::<Option<_>>()
            .ok_or("malformed embedding")?,
    };
    if vecs.len() != expected {
        return Err(format!(
            "expected {expected} embeddings, got {}",
            vecs.len()
        ));
    }
    Ok(vecs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_shapes() {
        let a = chat(
            ProviderKind::Anthropic,
            "https://api.anthropic.com/v1",
            "claude-x",
            "sys",
            "usr",
            1000,
        );
        assert_eq!(a.url, "https://api.anthropic.com/v1/messages");
        let b: Value = serde_json::from_str(a.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            (
                b["max_tokens"].as_u64(),
                b["stream"].as_bool(),
                b["system"].as_str()
            ),
            (Some(1000), Some(false), Some("sys"))
        );
        assert!(a
            .headers
            .contains(&("anthropic-version", ANTHROPIC_VERSION.into())));
        let o = chat(
            ProviderKind::OpenAi,
            "https://api.openai.com/v1/",
            "gpt-x",
            "sys",
            "usr",
            10,
        );
        let b: Value = serde_json::from_str(o.body.as_deref().unwrap()).unwrap();
        assert_eq!(o.url, "https://api.openai.com/v1/chat/completions");
        assert_eq!(b["messages"][0]["role"], "system");
        assert_eq!(b["max_completion_tokens"], 10);
        let c = chat(
            ProviderKind::OpenAiCompatible,
            "https://openrouter.ai/api/v1",
            "a/b",
            "s",
            "u",
            10,
        );
        assert!(c.body.as_deref().unwrap().contains("\"max_tokens\":10"));
        let g = chat(
            ProviderKind::Gemini,
            "https://generativelanguage.googleapis.com/v1beta",
            "models/gemini-2.5-pro",
            "s",
            "u",
            10,
        );
        assert_eq!(g.url, "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:generateContent");
        assert!(!g.url.contains("key="));
        assert_eq!(
            auth_header(ProviderKind::OpenAi, "sk-1"),
            ("authorization", "Bearer sk-1".into())
        );
        assert_eq!(auth_header(ProviderKind::Gemini, "k").0, "x-goog-api-key");
        assert!(embeddings(ProviderKind::Anthropic, "x", "m", &["a"]).is_none());
    }

    #[test]
    fn response_shapes() {
        let a = br#"{"id":"msg_1","type":"message","role":"assistant","content":[{"type":"text","text":"{\"summary\":\"s\"}"}],"stop_reason":"end_turn","usage":{"input_tokens":12,"output_tokens":5}}"#;
        let c = parse_chat(ProviderKind::Anthropic, a).unwrap();
        assert_eq!(
            (c.text.as_str(), c.input_tokens, c.truncated),
            ("{\"summary\":\"s\"}", Some(12), false)
        );
        let o = br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#;
        let c = parse_chat(ProviderKind::OpenAi, o).unwrap();
        assert_eq!(
            (c.text.as_str(), c.output_tokens, c.truncated),
            ("hi", Some(4), true)
        );
        let g = br#"{"candidates":[{"content":{"parts":[{"text":"a"},{"text":"b"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":9,"candidatesTokenCount":2}}"#;
        assert_eq!(parse_chat(ProviderKind::Gemini, g).unwrap().text, "ab");
        assert!(parse_chat(ProviderKind::Gemini, b"<html>").is_err());
        let e = br#"{"data":[{"index":1,"embedding":[0.5]},{"index":0,"embedding":[0.25]}]}"#;
        assert_eq!(
            parse_embeddings(ProviderKind::OpenAi, e, 2).unwrap(),
            vec![vec![0.25], vec![0.5]]
        );
        assert!(parse_embeddings(ProviderKind::OpenAi, e, 3).is_err());
        let ge = br#"{"embeddings":[{"values":[1.0,2.0]}]}"#;
        assert_eq!(
            parse_embeddings(ProviderKind::Gemini, ge, 1).unwrap(),
            vec![vec![1.0, 2.0]]
        );
    }
}
