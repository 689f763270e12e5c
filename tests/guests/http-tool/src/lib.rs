//! A tool that makes one HTTP request through `wasi:http/outgoing-handler` (manifest name
//! `http-tool`, which requests no capability: the operator grants `http.outbound`).
//!
//! Input `{"url": "http://host:port/path?query", "method": "GET", "body_bytes"?: N,
//! "timeout_ms"?: N, "dry"?: true}`: sends `method` to `url` with a body of N bytes (`x`s,
//! streamed without a `Content-Length`), with `timeout_ms` as the request's first-byte and
//! between-bytes timeouts, reads the whole response body and answers
//! `{"status": S, "len": BODY_BYTES, "location": "…"}` (`location` only on a redirect; with
//! `"follow": true` it then requests the `Location` itself, as a client following redirects
//! would, and adds that answer as `"then"`). Any
//! failure is answered as `{"error": "…"}` (the `error-code`, or the stream error), so the
//! smoke call and tests see it as data. `dry` answers `{"dry": true}` without a request (the
//! example input, so registration makes no request).

use exports::colony::plugin::tool_handler::{Guest, ToolSpec};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, RequestOptions, Scheme};
use wasi::io::streams::StreamError;

wit_bindgen::generate!({ path: "../../../wit", world: "tool", generate_all });

const MANIFEST_JSON: &[u8] = br#"{"schema":1,"name":"http-tool","version":"1.0.0","kind":"tool","description":"HTTP test tool.","capabilities":[]}"#;

#[unsafe(link_section = "colony-manifest")]
#[used]
static MANIFEST: [u8; MANIFEST_JSON.len()] = {
    let mut out = [0u8; MANIFEST_JSON.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = MANIFEST_JSON[i];
        i += 1;
    }
    out
};

struct Tool;

/// The string value of `"key": "…"` in flat JSON (no escapes in the tests' values).
fn string_field(json: &str, key: &str) -> Option<String> {
    let rest = json.split(&format!("\"{key}\"")).nth(1)?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest.split('"').next()?.to_string())
}

/// The integer value of `"key": N` in flat JSON.
fn number_field(json: &str, key: &str) -> Option<u64> {
    let rest = json.split(&format!("\"{key}\"")).nth(1)?;
    let rest = rest.trim_start().strip_prefix(':')?.trim_start();
    rest.chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .ok()
}

fn escape(s: &str) -> String {
    s.chars()
        .flat_map(|c| match c {
            '"' => vec!['\\', '"'],
            '\\' => vec!['\\', '\\'],
            c if c.is_control() => vec![' '],
            c => vec![c],
        })
        .collect()
}

struct Fetched {
    status: u16,
    len: u64,
    location: Option<String>,
}

fn fetch(
    url: &str,
    method: &str,
    body_bytes: u64,
    timeout_ms: Option<u64>,
) -> Result<Fetched, String> {
    let (scheme, rest) = url.split_once("://").ok_or("url has no scheme")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let method = match method {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "HEAD" => Method::Head,
        "DELETE" => Method::Delete,
        other => Method::Other(other.to_string()),
    };
    request.set_method(&method).map_err(|()| "bad method")?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.to_string()),
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| "bad scheme")?;
    request
        .set_authority(Some(authority))
        .map_err(|()| "bad authority")?;
    request
        .set_path_with_query(Some(path))
        .map_err(|()| "bad path")?;
    let options = timeout_ms.map(|ms| {
        let o = RequestOptions::new();
        let ns = ms * 1_000_000;
        let _ = o.set_first_byte_timeout(Some(ns));
        let _ = o.set_between_bytes_timeout(Some(ns));
        o
    });
    let body = request.body().map_err(|()| "no body")?;
    let pending = outgoing_handler::handle(request, options).map_err(|e| format!("{e:?}"))?;

    // The body goes out after the request started (a larger one than the host buffers
    // would otherwise wait forever).
    if body_bytes > 0 {
        if let Ok(out) = body.write() {
            let chunk = vec![b'x'; 4096];
            let mut left = body_bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                if out.blocking_write_and_flush(&chunk[..n]).is_err() {
                    break;
                }
                left -= n as u64;
            }
        }
    }
    let _ = OutgoingBody::finish(body, None);

    let response = loop {
        match pending.get() {
            Some(r) => break r,
            None => pending.subscribe().block(),
        }
    };
    let response = response
        .map_err(|()| "response taken twice".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .first()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let incoming = response.consume().map_err(|()| "no response body")?;
    let stream = incoming.stream().map_err(|()| "no response stream")?;
    let mut len = 0u64;
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => len += chunk.len() as u64,
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                return Err(format!(
                    "response body failed after {len} bytes: {}",
                    e.to_debug_string()
                ));
            }
        }
    }
    Ok(Fetched {
        status,
        len,
        location,
    })
}

fn answer(
    url: &str,
    method: &str,
    body_bytes: u64,
    timeout_ms: Option<u64>,
    follow: bool,
) -> String {
    match fetch(url, method, body_bytes, timeout_ms) {
        Ok(f) => match f.location {
            Some(l) => {
                let then = if follow && (300..400).contains(&f.status) {
                    format!(r#","then":{}"#, answer(&l, "GET", 0, timeout_ms, false))
                } else {
                    String::new()
                };
                format!(
                    r#"{{"status":{},"len":{},"location":"{}"{then}}}"#,
                    f.status,
                    f.len,
                    escape(&l)
                )
            }
            None => format!(r#"{{"status":{},"len":{}}}"#, f.status, f.len),
        },
        Err(e) => format!(r#"{{"error":"{}"}}"#, escape(&e)),
    }
}

impl Guest for Tool {
    fn describe() -> ToolSpec {
        ToolSpec {
            name: "http-tool".into(),
            description: "Makes one HTTP request and reports the status and body length; test guest.".into(),
            input_schema: r#"{"type":"object","properties":{"url":{"type":"string"},"method":{"type":"string"},"body_bytes":{"type":"integer","minimum":0},"timeout_ms":{"type":"integer","minimum":1},"dry":{"type":"boolean"},"follow":{"type":"boolean"}},"required":["url","method"],"additionalProperties":false,"examples":[{"url":"http://example.invalid/","method":"GET","dry":true}]}"#.into(),
            output_schema: None,
        }
    }

    fn invoke(args_json: String) -> Result<String, String> {
        if args_json.contains("\"dry\":true") || args_json.contains("\"dry\": true") {
            return Ok(r#"{"dry":true}"#.into());
        }
        let url = string_field(&args_json, "url").ok_or("no url")?;
        let method = string_field(&args_json, "method").ok_or("no method")?;
        let body_bytes = number_field(&args_json, "body_bytes").unwrap_or(0);
        let timeout_ms = number_field(&args_json, "timeout_ms");
        let follow =
            args_json.contains("\"follow\":true") || args_json.contains("\"follow\": true");
        Ok(answer(&url, &method, body_bytes, timeout_ms, follow))
    }
}

export!(Tool);
