//! `nsq_to_nsq`'s JSON filters: `--require-json-field` (and
//! `--require-json-value`) decide which messages are relayed,
//! `--whitelist-json-field` trims them to the listed fields.
//!
//! As upstream: with either filter on, a body that is not a JSON object is
//! dropped (finished, not relayed); a message without the required field is
//! dropped too, unless a value is required, in which case it is requeued
//! with backoff. A required value matches a string field exactly, or a
//! number field that equals it as a number.

use bytes::Bytes;
use serde_json::{Map, Number, Value};

#[derive(Debug, Clone, Default)]
pub struct JsonFilter {
    require_field: String,
    require_value: String,
    /// `require_value` read as a number, when it is one.
    require_number: Option<f64>,
    whitelist: Vec<String>,
}

/// What to do with a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Relay this body.
    Pass(Bytes),
    /// Finish the message without relaying it.
    Drop,
    /// Requeue it with backoff.
    Backoff,
}

impl JsonFilter {
    /// Empty strings and an empty list mean "no filter", as upstream's flags.
    pub fn new(require_field: &str, require_value: &str, whitelist: &[String]) -> JsonFilter {
        JsonFilter {
            require_field: require_field.to_string(),
            require_value: require_value.to_string(),
            require_number: require_value.parse::<f64>().ok(),
            whitelist: whitelist.to_vec(),
        }
    }

    pub fn apply(&self, body: &Bytes) -> Verdict {
        if self.require_field.is_empty() && self.whitelist.is_empty() {
            return Verdict::Pass(body.clone());
        }
        let Ok(object) = serde_json::from_slice::<Map<String, Value>>(body) else {
            tracing::warn!(body = %String::from_utf8_lossy(body), "unable to decode JSON; dropping");
            return Verdict::Drop;
        };
        if let Some(verdict) = self.check_required(&object) {
            return verdict;
        }
        if self.whitelist.is_empty() {
            return Verdict::Pass(body.clone());
        }
        let trimmed: Map<String, Value> = self
            .whitelist
            .iter()
            .filter_map(|key| object.get(key).map(|v| (key.clone(), integral(v))))
            .collect();
        Verdict::Pass(go_json(&Value::Object(trimmed)).into())
    }

    /// `None` when the message passes the required-field test.
    fn check_required(&self, object: &Map<String, Value>) -> Option<Verdict> {
        if self.require_field.is_empty() {
            return None;
        }
        let Some(value) = object.get(&self.require_field) else {
            if self.require_value.is_empty() {
                return Some(Verdict::Drop);
            }
            tracing::error!(field = %self.require_field, "missing field to check required value");
            return Some(Verdict::Backoff);
        };
        if self.require_value.is_empty() {
            return None;
        }
        let matches = match (value, self.require_number) {
            (Value::String(s), _) => *s == self.require_value,
            (Value::Number(n), Some(wanted)) => n.as_f64() == Some(wanted),
            _ => false,
        };
        (!matches).then_some(Verdict::Drop)
    }
}

/// A whole-valued float written as an integer, as upstream does before
/// re-encoding (`3.0` stays `3`).
fn integral(value: &Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.fract() == 0.0 && f.abs() < 9.2e18 {
                Value::Number(Number::from(f as i64))
            } else {
                value.clone()
            }
        }
        other => other.clone(),
    }
}

/// JSON as Go's `encoding/json` writes it: keys sorted, and `<`, `>`, `&`,
/// U+2028 and U+2029 escaped. Those characters only occur inside strings,
/// so replacing them in the output is safe.
fn go_json(value: &Value) -> String {
    let text = serde_json::to_string(value).expect("a JSON value serializes");
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> Verdict {
        Verdict::Pass(Bytes::copy_from_slice(s.as_bytes()))
    }

    fn run(filter: &JsonFilter, body: &str) -> Verdict {
        filter.apply(&Bytes::copy_from_slice(body.as_bytes()))
    }

    #[test]
    fn no_filters_pass_anything() {
        let f = JsonFilter::new("", "", &[]);
        assert_eq!(run(&f, "not json"), pass("not json"));
    }

    #[test]
    fn required_field_and_value() {
        let f = JsonFilter::new("kind", "", &[]);
        assert_eq!(run(&f, r#"{"kind":1}"#), pass(r#"{"kind":1}"#));
        assert_eq!(run(&f, r#"{"other":1}"#), Verdict::Drop);
        assert_eq!(run(&f, "[1]"), Verdict::Drop);
        assert_eq!(run(&f, "nope"), Verdict::Drop);

        let f = JsonFilter::new("kind", "click", &[]);
        assert_eq!(run(&f, r#"{"kind":"click"}"#), pass(r#"{"kind":"click"}"#));
        assert_eq!(run(&f, r#"{"kind":"view"}"#), Verdict::Drop);
        assert_eq!(run(&f, r#"{"other":1}"#), Verdict::Backoff);
        assert_eq!(run(&f, r#"{"kind":true}"#), Verdict::Drop);

        let f = JsonFilter::new("n", "2", &[]);
        assert_eq!(run(&f, r#"{"n":2.0}"#), pass(r#"{"n":2.0}"#));
        assert_eq!(run(&f, r#"{"n":"2"}"#), pass(r#"{"n":"2"}"#));
        assert_eq!(run(&f, r#"{"n":3}"#), Verdict::Drop);
    }

    #[test]
    fn whitelist_trims_and_sorts() {
        let fields = vec!["z".to_string(), "a".to_string(), "missing".to_string()];
        let f = JsonFilter::new("", "", &fields);
        assert_eq!(
            run(&f, r#"{"z":3.0,"b":1,"a":"<&>","c":[1]}"#),
            pass(r#"{"a":"\u003c\u0026\u003e","z":3}"#)
        );
        assert_eq!(run(&f, r#"{"q":1}"#), pass("{}"));
        assert_eq!(run(&f, r#"{"z":1.5}"#), pass(r#"{"z":1.5}"#));
    }
}
