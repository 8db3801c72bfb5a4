//! Embeddings (`POST /v1/embeddings`) and rerank (`POST /v1/rerank`, `/v1/reranks`, `/rerank`)
//! for the server. The backend decides when the answer is ready: a request is a generation of
//! one token, so the simulator's time to first token is the processing time, and its capacity
//! and fault injection apply as they do to chat.
//!
//! Embeddings answer as OpenAI does (`data[].embedding` as floats, or base64 little-endian f32
//! with `encoding_format: "base64"`, which the official client asks for; `usage.prompt_tokens`,
//! `total_tokens`); rerank as vLLM and Jina do (`results[]` with `index`, `relevance_score`,
//! `document.text`, best first; `usage`).

use base64::Engine;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::{json, Value};

use super::protocol::{error_response, next_sequence, CompletionRequest};
use super::{full, Body, Piece, Shared};

/// Dimensions of the simulated embeddings.
const DIMENSIONS: usize = 64;

/// One embedding input or rerank document.
enum Input {
    Text(String),
    Ids(Vec<u32>),
}

impl Input {
    /// A string, token ids, or `{"text": ...}`.
    fn of(v: &Value) -> Option<Self> {
        match v {
            Value::String(s) => Some(Input::Text(s.clone())),
            Value::Array(ids) => ids
                .iter()
                .map(|i| i.as_u64().and_then(|i| u32::try_from(i).ok()))
                .collect::<Option<_>>()
                .map(Input::Ids),
            Value::Object(o) => o
                .get("text")
                .and_then(Value::as_str)
                .map(|t| Input::Text(t.to_string())),
            _ => None,
        }
    }

    /// The text of a string or `{"text"}` (rerank takes only text).
    fn text(v: &Value) -> Option<String> {
        match Input::of(v)? {
            Input::Text(t) => Some(t),
            Input::Ids(_) => None,
        }
    }

    /// What the simulated vector is derived from.
    fn key(&self) -> String {
        match self {
            Input::Text(t) => t.clone(),
            Input::Ids(ids) => format!("{ids:?}"),
        }
    }
}

/// A deterministic unit-length vector for `text`.
fn vector(text: &str, dims: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let raw: Vec<f32> = (0..dims)
        .map(|i| {
            h = h
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407 + i as u64);
            ((h >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let norm = raw
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    raw.into_iter().map(|x| x / norm).collect()
}

/// Reads the body as JSON, or the error response to send.
async fn json_body(req: Request<Incoming>) -> Result<Value, Response<Body>> {
    let bytes = req
        .into_body()
        .collect()
        .await
        .map_err(|e| {
            error_response(
                StatusCode::BAD_REQUEST,
                &format!("cannot read the body: {e}"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        error_response(
            StatusCode::BAD_REQUEST,
            &format!("the request body is not valid JSON: {e}"),
        )
    })
}

/// Runs `inputs` through the backend as one request (texts as one prompt, token ids as the
/// prompt's ids): (the server's sequence number, prompt tokens), or the error to send.
async fn process(
    shared: &Shared,
    model: &str,
    inputs: &[Input],
) -> Result<(u64, u64), Response<Body>> {
    let sequence = next_sequence();
    let texts: Vec<&str> = inputs
        .iter()
        .filter_map(|i| match i {
            Input::Text(t) => Some(t.as_str()),
            Input::Ids(_) => None,
        })
        .collect();
    let ids: Vec<u32> = inputs
        .iter()
        .flat_map(|i| match i {
            Input::Ids(ids) => ids.clone(),
            Input::Text(_) => Vec::new(),
        })
        .collect();
    let request = CompletionRequest {
        sequence,
        chat: false,
        model: model.to_string(),
        max_tokens: Some(1),
        prompt: Some(texts.join(" ")),
        prompt_ids: (!ids.is_empty()).then_some(ids),
        ..CompletionRequest::default()
    };
    let mut generation = shared
        .backend
        .start(&request)
        .map_err(|r| error_response(r.status, &r.message))?;
    while let Some(piece) = generation.pieces.recv().await {
        match piece {
            Piece::End { .. } => break,
            Piece::Drop => {
                return Err(error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "processing aborted",
                ))
            }
            Piece::Text { .. } | Piece::Malformed => {}
        }
    }
    Ok((sequence, generation.prompt_tokens))
}

fn model_of(body: &Value, shared: &Shared) -> String {
    body.get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| shared.backend.model())
        .to_string()
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(req: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let body = match json_body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let inputs: Vec<Input> = match body.get("input") {
        Some(v @ Value::Array(items)) if items.iter().all(Value::is_u64) => {
            Input::of(v).into_iter().collect()
        }
        Some(Value::Array(items)) => match items.iter().map(Input::of).collect::<Option<_>>() {
            Some(t) => t,
            None => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "`input` must hold strings or token ids",
                )
            }
        },
        Some(v) => match Input::of(v) {
            Some(t) => vec![t],
            None => return error_response(StatusCode::BAD_REQUEST, "`input` is not text"),
        },
        None => return error_response(StatusCode::BAD_REQUEST, "the body needs `input`"),
    };
    if inputs.is_empty() {
        return error_response(StatusCode::BAD_REQUEST, "`input` is empty");
    }
    let model = model_of(&body, shared);
    let (_, tokens) = match process(shared, &model, &inputs).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let dims = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(DIMENSIONS, |d| d.clamp(1, 8192) as usize);
    let base64 = body.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let v = vector(&input.key(), dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(v)
            };
            json!({"object": "embedding", "index": i, "embedding": embedding})
        })
        .collect();
    let answer = json!({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    full(StatusCode::OK, "application/json", answer.to_string())
}

/// `POST /v1/rerank`.
pub(crate) async fn rerank(req: Request<Incoming>, shared: &Shared) -> Response<Body> {
    let body = match json_body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Some(query) = body.get("query").and_then(Input::text) else {
        return error_response(StatusCode::BAD_REQUEST, "the body needs a `query`");
    };
    let documents: Vec<String> = match body.get("documents").and_then(Value::as_array) {
        Some(docs) => match docs.iter().map(Input::text).collect::<Option<_>>() {
            Some(d) => d,
            None => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    "`documents` must be strings or {\"text\"} objects",
                )
            }
        },
        None => return error_response(StatusCode::BAD_REQUEST, "the body needs `documents`"),
    };
    let model = model_of(&body, shared);
    let all: Vec<Input> = std::iter::once(&query)
        .chain(&documents)
        .map(|t| Input::Text(t.clone()))
        .collect();
    let (sequence, tokens) = match process(shared, &model, &all).await {
        Ok(t) => t,
        Err(resp) => return resp,
    };
    let q = vector(&query, DIMENSIONS);
    let mut scored: Vec<(usize, f32)> = documents
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let v = vector(d, DIMENSIONS);
            let cosine: f32 = q.iter().zip(&v).map(|(a, b)| a * b).sum();
            (i, (cosine + 1.0) / 2.0)
        })
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top_n = body
        .get("top_n")
        .and_then(Value::as_u64)
        .map_or(scored.len(), |n| n as usize);
    let results: Vec<Value> = scored
        .into_iter()
        .take(top_n)
        .map(|(i, score)| json!({"index": i, "relevance_score": score, "document": {"text": documents[i]}}))
        .collect();
    let answer = json!({
        "id": format!("rerank-perf-{sequence}"), "model": model, "results": results,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    });
    full(StatusCode::OK, "application/json", answer.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_are_text_token_ids_or_text_objects() {
        let ids = Input::of(&json!([1, 2, 3])).expect("ids");
        assert!(matches!(&ids, Input::Ids(v) if v == &[1, 2, 3]));
        assert!(matches!(Input::of(&json!({"text": "t"})), Some(Input::Text(t)) if t == "t"));
        assert!(Input::of(&json!([1, "x"])).is_none());
        assert_eq!(Input::text(&json!([1, 2])), None, "rerank takes text only");
    }

    #[test]
    fn vectors_are_deterministic_unit_vectors() {
        let a = vector("hello", 64);
        assert_eq!(a, vector("hello", 64));
        assert_ne!(a, vector("world", 64));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
    }
}
