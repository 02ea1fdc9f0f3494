//! Upstream NSQ v1.3.0's answers, captured on loopback and kept under
//! `tests/fixtures/nsq-samples` (its README says how): the one loader, and
//! the comparisons of our answers with them.

use crate::Reply;
use std::path::PathBuf;

/// Path of a capture file, e.g. `tcp/tcp_exchanges.json`.
pub fn capture_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/nsq-samples")
        .join(relative)
}

/// The text of a capture file.
pub fn capture_file(relative: &str) -> String {
    std::fs::read_to_string(capture_path(relative))
        .unwrap_or_else(|e| panic!("capture {relative}: {e}"))
}

/// One captured HTTP answer, `NAME.headers` (status line and headers) and
/// `NAME.body`, e.g. `capture("nsqd/info")`.
pub fn capture(name: &str) -> Reply {
    let head = capture_file(&format!("{name}.headers"));
    Reply::parse_head(&head, capture_body(name))
}

/// The body of one captured HTTP answer.
pub fn capture_body(name: &str) -> String {
    capture_file(&format!("{name}.body"))
}

/// How a body is compared with its capture.
pub enum Same {
    /// Byte for byte.
    Body,
    /// Field names, order and kinds, recursively (values differ between runs).
    JsonShape,
    /// Status and headers only.
    Nothing,
}

/// Same status as the capture, the same headers with the same values (Date
/// and Content-Length aside), none that the capture lacks, a Content-Length
/// that counts our body, and the body as `same` says.
#[track_caller]
pub fn assert_like_capture(reply: &Reply, name: &str, same: Same) {
    let sample = capture(name);
    assert_eq!(reply.status, sample.status, "{name}: {reply:?}");
    for (header, value) in &sample.headers {
        if header != "date" && header != "content-length" {
            assert_eq!(
                reply.header(header),
                Some(value.as_str()),
                "{name}: {header}"
            );
        }
    }
    for (header, _) in &reply.headers {
        if header != "date" && header != "content-length" {
            assert!(
                sample.header(header).is_some(),
                "{name}: upstream sends no {header}"
            );
        }
    }
    if sample.header("content-length").is_some() {
        let length = reply.body.len().to_string();
        assert_eq!(
            reply.header("content-length"),
            Some(length.as_str()),
            "{name}: content-length"
        );
    }
    match same {
        Same::Body => assert_eq!(reply.body, sample.body, "{name}"),
        Same::JsonShape => assert_eq!(json_shape(&reply.body), json_shape(&sample.body), "{name}"),
        Same::Nothing => {}
    }
}

/// Every path of a JSON document with the kind of its value, in document
/// order, e.g. `.topics[].channels[].depth: number`. Array elements share
/// one path; each path is listed once, where it first appears.
pub fn json_shape(text: &str) -> Vec<String> {
    let mut parser = ShapeParser {
        text: text.as_bytes(),
        pos: 0,
        paths: Vec::new(),
    };
    parser.value("");
    parser.skip_space();
    assert_eq!(parser.pos, text.len(), "trailing bytes after JSON");
    let mut seen = std::collections::HashSet::new();
    parser.paths.retain(|p| seen.insert(p.clone()));
    parser.paths
}

/// Walks JSON text, keeping the order of object keys that `serde_json::Value` loses.
struct ShapeParser<'a> {
    text: &'a [u8],
    pos: usize,
    paths: Vec<String>,
}

impl ShapeParser<'_> {
    fn skip_space(&mut self) {
        while self.text.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn next_byte(&mut self) -> u8 {
        self.skip_space();
        let b = self.text[self.pos];
        self.pos += 1;
        b
    }

    fn value(&mut self, path: &str) {
        self.skip_space();
        let kind = match self.text[self.pos] {
            b'{' => {
                self.paths.push(format!("{path}: object"));
                self.pos += 1;
                self.skip_space();
                if self.text[self.pos] == b'}' {
                    self.pos += 1;
                    return;
                }
                loop {
                    self.skip_space();
                    let key = self.string();
                    assert_eq!(self.next_byte(), b':');
                    self.value(&format!("{path}.{key}"));
                    match self.next_byte() {
                        b',' => continue,
                        b'}' => return,
                        b => panic!("unexpected {:?} in object", b as char),
                    }
                }
            }
            b'[' => {
                self.paths.push(format!("{path}: array"));
                self.pos += 1;
                self.skip_space();
                if self.text[self.pos] == b']' {
                    self.pos += 1;
                    return;
                }
                loop {
                    self.value(&format!("{path}[]"));
                    match self.next_byte() {
                        b',' => continue,
                        b']' => return,
                        b => panic!("unexpected {:?} in array", b as char),
                    }
                }
            }
            b'"' => {
                self.string();
                "string"
            }
            b't' | b'f' | b'n' => {
                let kind = if self.text[self.pos] == b'n' {
                    "null"
                } else {
                    "bool"
                };
                while self.text.get(self.pos).is_some_and(u8::is_ascii_alphabetic) {
                    self.pos += 1;
                }
                kind
            }
            _ => {
                while self
                    .text
                    .get(self.pos)
                    .is_some_and(|b| b"+-.eE0123456789".contains(b))
                {
                    self.pos += 1;
                }
                "number"
            }
        };
        self.paths.push(format!("{path}: {kind}"));
    }

    fn string(&mut self) -> String {
        assert_eq!(self.text[self.pos], b'"');
        let start = self.pos + 1;
        self.pos = start;
        while self.text[self.pos] != b'"' {
            self.pos += if self.text[self.pos] == b'\\' { 2 } else { 1 };
        }
        self.pos += 1;
        String::from_utf8_lossy(&self.text[start..self.pos - 1]).into_owned()
    }
}
