//! List uploads, streamed: the body is split into records as it arrives and each record is
//! handed to Kafka at once, so memory holds one record plus the deliveries in flight
//! ([`MAX_IN_FLIGHT`]), whatever the file's size.
//!
//! JSON lines: each non-blank line one record. CSV: the first non-blank row is the header,
//! sent with every data row as the `csv-header` header; a newline inside a quoted field does
//! not end a row. Refused here, with their line numbers: lines that are not JSON, rows whose
//! column count differs from the header's, records longer than `max_record_bytes`. Anything
//! deeper is the chain's to judge.

use crate::error::{Error, Result};
use crate::publish::{delivered, Meta, Publisher};
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use serde::Serialize;

/// Deliveries awaited at most at once; past it, reading waits for acknowledgements.
pub const MAX_IN_FLIGHT: usize = 20_000;
/// Rejected lines listed in the answer; the count goes on.
pub const MAX_LISTED: usize = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

impl Format {
    pub fn from_content_type(ct: &str) -> Option<Format> {
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match mime.as_str() {
            "text/csv" | "application/csv" => Some(Format::Csv),
            "application/x-ndjson"
            | "application/jsonl"
            | "application/jsonlines"
            | "application/json-lines"
            | "application/x-jsonlines" => Some(Format::Json),
            _ => None,
        }
    }

    pub const fn source(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

/// One record of the body, by the physical line it starts on (1-based).
#[derive(Debug, PartialEq)]
pub struct Piece {
    pub line: u64,
    pub data: std::result::Result<Vec<u8>, String>,
}

/// Splits a byte stream into records incrementally.
pub struct Splitter {
    csv: bool,
    max: usize,
    buf: Vec<u8>,
    quoted: bool,
    oversize: bool,
    line: u64,
    start: u64,
}

impl Splitter {
    pub fn new(format: Format, max_record_bytes: usize) -> Splitter {
        Splitter {
            csv: format == Format::Csv,
            max: max_record_bytes,
            buf: Vec::new(),
            quoted: false,
            oversize: false,
            line: 1,
            start: 1,
        }
    }

    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<Piece>) {
        let mut from = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if self.csv && b == b'"' {
                self.quoted = !self.quoted;
            } else if b == b'\n' {
                self.line += 1;
                if self.csv && self.quoted {
                    continue;
                }
                self.append(&chunk[from..i]);
                from = i + 1;
                self.emit(out);
                self.start = self.line;
            }
        }
        self.append(&chunk[from..]);
    }

    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        if self.csv && self.quoted && !self.buf.is_empty() {
            self.buf.clear();
            out.push(Piece {
                line: self.start,
                data: Err("unterminated quoted field at the end of the file".into()),
            });
            return;
        }
        self.emit(out);
    }

    fn append(&mut self, part: &[u8]) {
        if self.oversize {
            return;
        }
        if self.buf.len() + part.len() > self.max {
            self.oversize = true;
            self.buf = Vec::new();
        } else {
            self.buf.extend_from_slice(part);
        }
    }

    fn emit(&mut self, out: &mut Vec<Piece>) {
        if self.oversize {
            self.oversize = false;
            out.push(Piece {
                line: self.start,
                data: Err(format!("longer than max_record_bytes {}", self.max)),
            });
            return;
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        // A byte-order mark before the first line is no part of the record.
        if self.start == 1 && self.buf.starts_with(b"\xef\xbb\xbf") {
            self.buf.drain(..3);
        }
        if self.buf.iter().all(u8::is_ascii_whitespace) {
            self.buf.clear();
            return;
        }
        out.push(Piece {
            line: self.start,
            data: Ok(std::mem::take(&mut self.buf)),
        });
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rejected {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Outcome {
    /// Records Kafka acknowledged.
    pub accepted: u64,
    /// Lines refused, all of them.
    pub rejected_count: u64,
    /// The first [`MAX_LISTED`] refused lines.
    pub rejected: Vec<Rejected>,
    pub request_id: String,
}

impl Outcome {
    fn reject(&mut self, line: u64, reason: String) {
        self.rejected_count += 1;
        if self.rejected.len() < MAX_LISTED {
            self.rejected.push(Rejected { line, reason });
        }
    }
}

/// What the record checks need of the CSV header.
struct Header {
    raw: Vec<u8>,
    columns: usize,
    email: Option<usize>,
}

fn csv_fields(row: &[u8]) -> std::result::Result<csv::ByteRecord, String> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(row);
    let mut rec = csv::ByteRecord::new();
    match r.read_byte_record(&mut rec) {
        Ok(true) => Ok(rec),
        Ok(false) => Err("empty row".into()),
        Err(e) => Err(format!("not CSV: {e}")),
    }
}

/// The recipient of a record, for its key.
fn json_email(data: &[u8]) -> std::result::Result<Option<String>, String> {
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(v) => Ok(v.get("email").and_then(|e| e.as_str()).map(|e| e.trim().to_lowercase())),
        Err(e) => Err(format!("not JSON: {e}")),
    }
}

/// Streams `body` into `raw.<chain>`; answers once every accepted record is acknowledged.
#[allow(clippy::too_many_arguments)]
pub async fn run<S, E>(
    publisher: &Publisher,
    tenant: &str,
    chain: &str,
    format: Format,
    request_id: &str,
    max_record_bytes: usize,
    max_upload_bytes: u64,
    mut body: S,
) -> (Outcome, Result<()>)
where
    S: Stream<Item = std::result::Result<axum::body::Bytes, E>> + Unpin,
    E: Into<axum::BoxError>,
{
    let topic = publisher.topic(chain);
    let mut out = Outcome {
        request_id: request_id.to_owned(),
        ..Outcome::default()
    };
    let mut splitter = Splitter::new(format, max_record_bytes);
    let mut header: Option<Header> = None;
    let mut pieces = Vec::new();
    let mut inflight = FuturesUnordered::new();
    let mut sent = 0u64;
    let mut seen = 0u64;
    let mut done = false;
    let result: Result<()> = async {
        while !done {
            match body.next().await {
                Some(Ok(chunk)) => {
                    seen += chunk.len() as u64;
                    if seen > max_upload_bytes {
                        return Err(Error::TooLarge(format!(
                            "upload larger than max_upload_bytes {max_upload_bytes}"
                        )));
                    }
                    splitter.push(&chunk, &mut pieces);
                }
                Some(Err(e)) => return Err(Error::body("reading the upload", e)),
                None => {
                    splitter.finish(&mut pieces);
                    done = true;
                }
            }
            for piece in pieces.drain(..) {
                let data = match piece.data {
                    Ok(d) => d,
                    Err(reason) => {
                        out.reject(piece.line, reason);
                        continue;
                    }
                };
                let email = match (format, &header) {
                    (Format::Json, _) => match json_email(&data) {
                        Ok(e) => e,
                        Err(reason) => {
                            out.reject(piece.line, reason);
                            continue;
                        }
                    },
                    (Format::Csv, None) => {
                        match csv_fields(&data) {
                            Ok(h) => {
                                let email = h.iter().position(|c| {
                                    let c = String::from_utf8_lossy(c).trim().to_ascii_lowercase();
                                    matches!(c.as_str(), "email" | "email_address" | "email address" | "e-mail")
                                });
                                header = Some(Header {
                                    columns: h.len(),
                                    email,
                                    raw: data,
                                });
                            }
                            Err(reason) => out.reject(piece.line, format!("header row: {reason}")),
                        }
                        continue;
                    }
                    (Format::Csv, Some(h)) => match csv_fields(&data) {
                        Ok(r) if r.len() == h.columns => h
                            .email
                            .and_then(|i| r.get(i))
                            .map(|e| String::from_utf8_lossy(e).trim().to_lowercase()),
                        Ok(r) => {
                            out.reject(
                                piece.line,
                                format!("{} columns, the header row has {}", r.len(), h.columns),
                            );
                            continue;
                        }
                        Err(reason) => {
                            out.reject(piece.line, reason);
                            continue;
                        }
                    },
                };
                let key = format!("{tenant}:{}", email.unwrap_or_default());
                let meta = Meta {
                    tenant,
                    source: format.source(),
                    request_id,
                    csv_header: header.as_ref().map(|h| h.raw.as_slice()),
                };
                let f = publisher.send(&topic, key.as_bytes(), &data, &meta).await?;
                let t = topic.clone();
                inflight.push(async move { delivered(f, &t).await });
                sent += 1;
                while inflight.len() >= MAX_IN_FLIGHT {
                    if let Some(r) = inflight.next().await {
                        r?;
                        out.accepted += 1;
                    }
                }
            }
        }
        while let Some(r) = inflight.next().await {
            r?;
            out.accepted += 1;
        }
        Ok(())
    }
    .await;
    // Records handed to the producer before a failure (a body that paused past
    // request_timeout, a client gone) still land: counted once Kafka acknowledges them, so
    // the answer's `accepted` says what is in Kafka. Bounded by the producer's delivery timeout.
    if result.is_err() {
        while let Some(r) = inflight.next().await {
            if r.is_ok() {
                out.accepted += 1;
            }
        }
    }
    debug_assert!(result.is_err() || out.accepted == sent);
    (out, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_all(
        format: Format,
        body: &[u8],
        chunk: usize,
        max: usize,
    ) -> Vec<(u64, std::result::Result<String, String>)> {
        let mut s = Splitter::new(format, max);
        let mut out = Vec::new();
        for c in body.chunks(chunk) {
            s.push(c, &mut out);
        }
        s.finish(&mut out);
        out.into_iter()
            .map(|p| (p.line, p.data.map(|d| String::from_utf8(d).unwrap())))
            .collect()
    }

    #[test]
    fn lines_split_at_any_chunk_boundary() {
        let body = b"\xef\xbb\xbf{\"a\":1}\r\n\n{\"b\":2}\n   \n{\"c\":3}";
        for chunk in [1, 2, 3, 7, 100] {
            let got = split_all(Format::Json, body, chunk, 100);
            assert_eq!(
                got,
                vec![
                    (1, Ok("{\"a\":1}".into())),
                    (3, Ok("{\"b\":2}".into())),
                    (5, Ok("{\"c\":3}".into()))
                ],
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn csv_quoted_newlines_stay_in_their_row() {
        let body = b"email,note\na@x.com,\"two\nlines, \"\"quoted\"\"\"\nb@x.com,plain\n";
        for chunk in [1, 5, 1000] {
            let got = split_all(Format::Csv, body, chunk, 100);
            assert_eq!(got.len(), 3);
            assert_eq!(got[1], (2, Ok("a@x.com,\"two\nlines, \"\"quoted\"\"\"".into())));
            assert_eq!(got[2], (4, Ok("b@x.com,plain".into())));
            assert_eq!(csv_fields(got[1].1.as_ref().unwrap().as_bytes()).unwrap().len(), 2);
        }
        let open = split_all(Format::Csv, b"h\n\"never closed\nx\n", 4, 100);
        assert_eq!(open[1].0, 2);
        assert!(open[1].1.is_err());
    }

    #[test]
    fn oversized_records_are_refused_and_skipped_without_buffering() {
        let mut body = b"{\"a\":1}\n".to_vec();
        body.extend(std::iter::repeat_n(b'x', 10_000));
        body.extend(b"\n{\"b\":2}\n");
        let got = split_all(Format::Json, &body, 64, 100);
        assert_eq!(got.len(), 3);
        assert_eq!(got[1].0, 2);
        assert!(got[1].1.as_ref().unwrap_err().contains("max_record_bytes"));
        assert_eq!(got[2], (3, Ok("{\"b\":2}".into())));
    }

    #[test]
    fn content_types() {
        assert_eq!(Format::from_content_type("text/csv; charset=utf-8"), Some(Format::Csv));
        assert_eq!(Format::from_content_type("application/x-ndjson"), Some(Format::Json));
        assert_eq!(Format::from_content_type("application/json"), None);
    }
}
