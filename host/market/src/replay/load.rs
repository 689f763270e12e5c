//! Reading replay files: size limit, gzip, format detection, and dispatch to the parsers.

use super::MAX_INPUT_BYTES;
use super::bars::parse_bars;
use super::depth::{parse_depth_rows, replay_depth};
use super::jsonl::parse_jsonl;
use super::results::{Format, Replay, ReplayError, ReplayOptions};
use super::text::lines;
use flate2::read::GzDecoder;
use std::io;
use std::io::Read;
use std::path::Path;

/// Loads and parses replay files. Depth files are replayed as one stream in the order given
/// (a snapshot file, then its update files); the events of all files are merged by time.
pub fn load<P: AsRef<Path>>(paths: &[P], options: &ReplayOptions) -> Result<Replay, ReplayError> {
    let mut depth_rows = Vec::new();
    let mut parts = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let name = path.display().to_string();
        let bytes = read_input(path)?;
        match detect(&name, &bytes)? {
            Format::BinanceDepth => depth_rows.extend(parse_depth_rows(&name, &bytes)?),
            Format::Bars => parts.push(parse_bars(&name, &bytes, options)?),
            Format::Jsonl => parts.push(parse_jsonl(&name, &bytes)?),
        }
    }
    if !depth_rows.is_empty() {
        parts.push(replay_depth(&depth_rows, options.book_depth));
    }
    Ok(Replay::merge(parts))
}

/// Parses one file already in memory (`name` is used for format detection and in errors; a
/// name ending in `.gz` is decompressed first).
pub fn parse(name: &str, bytes: &[u8], options: &ReplayOptions) -> Result<Replay, ReplayError> {
    let text = if name.ends_with(".gz") {
        gunzip(name, bytes)?
    } else {
        bytes.to_vec()
    };
    match detect(name, &text)? {
        Format::BinanceDepth => Ok(replay_depth(
            &parse_depth_rows(name, &text)?,
            options.book_depth,
        )),
        Format::Bars => Ok(parse_bars(name, &text, options)?),
        Format::Jsonl => Ok(parse_jsonl(name, &text)?),
    }
}

fn read_input(path: &Path) -> Result<Vec<u8>, ReplayError> {
    let name = path.display().to_string();
    let file = colony_files::open_regular(path).map_err(|e| ReplayError::Read {
        file: name.clone(),
        source: match e {
            colony_files::ReadError::Io(e) => e,
            other => std::io::Error::other(other.to_string()),
        },
    })?;
    if name.ends_with(".gz") {
        return read_limited(&name, GzDecoder::new(file), true);
    }
    read_limited(&name, file, false)
}

pub(super) fn gunzip(name: &str, bytes: &[u8]) -> Result<Vec<u8>, ReplayError> {
    read_limited(name, GzDecoder::new(bytes), true)
}

fn read_limited(name: &str, reader: impl Read, gzip: bool) -> Result<Vec<u8>, ReplayError> {
    let mut out = Vec::new();
    reader
        .take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|source| match source.kind() {
            io::ErrorKind::InvalidInput
            | io::ErrorKind::InvalidData
            | io::ErrorKind::UnexpectedEof
                if gzip =>
            {
                ReplayError::File {
                    file: name.to_string(),
                    reason: format!("not a valid gzip file: {source}"),
                }
            }
            _ => ReplayError::Read {
                file: name.to_string(),
                source,
            },
        })?;
    if out.len() as u64 > MAX_INPUT_BYTES {
        return Err(ReplayError::File {
            file: name.to_string(),
            reason: format!("larger than {MAX_INPUT_BYTES} bytes"),
        });
    }
    Ok(out)
}

/// The format of a file: by extension (`.jsonl`, `.ndjson`; `.csv` then by header), else by
/// content (a first line starting with `{` is JSONL, a CSV header is recognised by its columns).
/// A trailing `.gz` is ignored; `bytes` are the decompressed contents.
pub fn detect(name: &str, bytes: &[u8]) -> Result<Format, ReplayError> {
    let stem = name.strip_suffix(".gz").unwrap_or(name);
    if stem.ends_with(".jsonl") || stem.ends_with(".ndjson") {
        return Ok(Format::Jsonl);
    }
    let first = lines(bytes)
        .map(|(_, l)| l)
        .find(|l| !l.iter().all(u8::is_ascii_whitespace))
        .unwrap_or(&[]);
    let first = first.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(first);
    if !stem.ends_with(".csv") && first.first() == Some(&b'{') {
        return Ok(Format::Jsonl);
    }
    let header: Vec<&[u8]> = first.split(|&b| b == b',').collect();
    if header.contains(&&b"update_type"[..]) {
        Ok(Format::BinanceDepth)
    } else if header.contains(&&b"open"[..]) {
        Ok(Format::Bars)
    } else {
        Err(ReplayError::File {
            file: name.to_string(),
            reason: "unknown format: expected a bar CSV (header timestamp,open,high,low,close,volume), a Binance \
                     depth CSV (header symbol,timestamp,first_update_id,last_update_id,side,update_type,price,qty,pu) \
                     or JSONL (.jsonl)"
                .to_string(),
        })
    }
}
