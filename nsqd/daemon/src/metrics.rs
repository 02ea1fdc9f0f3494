//! Writing `GET /metrics` for Prometheus (nsqd and nsqlookupd; upstream has
//! none). Two formats, negotiated as the Prometheus client libraries do:
//! OpenMetrics 1.0 when the scraper's `Accept` prefers it, else the text
//! format 0.0.4, which older scrapers, agents and `curl | grep` expect.
//!
//! The formats differ where we use them in three ways: a counter family is
//! named without `_total` in OpenMetrics (its samples keep it) and with it
//! in 0.0.4; OpenMetrics ends with `# EOF`; and it escapes `"` in HELP.

use std::fmt::Write;

/// A format of the exposition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus's text format, version 0.0.4.
    Text,
    /// The OpenMetrics text format, version 1.0.0.
    OpenMetrics,
}

impl Format {
    /// The format for an `Accept` header, as Go's `expfmt.Negotiate`: the
    /// acceptable media ranges by descending `q`, the first of
    /// `application/openmetrics-text` and `text/plain` (either without a
    /// version or with one we write) wins; anything else means 0.0.4.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let mut ranges: Vec<(f32, Format)> = Vec::new();
        for range in accept.unwrap_or("").split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let mut q = 1.0f32;
            let mut version = None;
            for param in parts {
                let (key, value) = param.split_once('=').unwrap_or((param, ""));
                match key.trim().to_ascii_lowercase().as_str() {
                    "q" => q = value.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(value.trim().trim_matches('"')),
                    _ => {}
                }
            }
            let format = match (media.as_str(), version) {
                ("application/openmetrics-text", None | Some("1.0.0" | "0.0.1")) => {
                    Format::OpenMetrics
                }
                ("text/plain", None | Some("0.0.4")) => Format::Text,
                _ => continue,
            };
            if q > 0.0 {
                ranges.push((q, format));
            }
        }
        // Stable: among equal weights, the first listed wins.
        ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
        ranges.first().map_or(Format::Text, |(_, format)| *format)
    }

    /// The format a request's `Accept` header asks for.
    pub fn for_request(headers: &axum::http::HeaderMap) -> Format {
        let accept = headers.get(axum::http::header::ACCEPT);
        Format::negotiate(accept.and_then(|v| v.to_str().ok()))
    }

    /// The `Content-Type` of an exposition in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// What a metric family measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up; its samples are named `<family>_total`.
    Counter,
    Gauge,
}

/// A sample's value, written exactly: integers as integers.
pub trait Value {
    fn write_to(&self, out: &mut String);
}

impl Value for u64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for i64 {
    fn write_to(&self, out: &mut String) {
        let _ = write!(out, "{self}");
    }
}

impl Value for f64 {
    fn write_to(&self, out: &mut String) {
        match *self {
            v if v.is_nan() => out.push_str("NaN"),
            v if v == f64::INFINITY => out.push_str("+Inf"),
            v if v == f64::NEG_INFINITY => out.push_str("-Inf"),
            v => {
                let _ = write!(out, "{v}");
            }
        }
    }
}

/// An exposition being written: families one after the other, each with
/// its HELP and TYPE and then its samples.
pub struct Exposition {
    format: Format,
    out: String,
    /// The name of the current family's samples.
    sample_name: String,
}

impl Exposition {
    /// `capacity` is a guess of the text's size, to write it in one buffer.
    pub fn new(format: Format, capacity: usize) -> Exposition {
        Exposition {
            format,
            out: String::with_capacity(capacity),
            sample_name: String::new(),
        }
    }

    /// Starts a family; its samples follow with [`Exposition::sample`].
    pub fn family(&mut self, name: &str, help: &str, kind: Kind) -> &mut Exposition {
        self.sample_name.clear();
        self.sample_name.push_str(name);
        if kind == Kind::Counter {
            self.sample_name.push_str("_total");
        }
        let family = match self.format {
            Format::Text => self.sample_name.as_str(),
            Format::OpenMetrics => name,
        };
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = write!(self.out, "# HELP {family} ");
        for c in help.chars() {
            match c {
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '"' if self.format == Format::OpenMetrics => self.out.push_str("\\\""),
                c => self.out.push(c),
            }
        }
        let _ = writeln!(self.out, "\n# TYPE {family} {kind}");
        self
    }

    /// One sample of the current family.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: impl Value) -> &mut Exposition {
        self.out.push_str(&self.sample_name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (name, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{name}=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        self.out.push(' ');
        value.write_to(&mut self.out);
        self.out.push('\n');
        self
    }

    /// The whole text.
    pub fn finish(mut self) -> String {
        if self.format == Format::OpenMetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
    }
}

/// The process's resident set, from `/proc/self/statm`; 0 where there is none.
pub fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Open file descriptors, from `/proc/self/fd`; 0 where there is none.
pub fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count() as u64)
}

/// The families every daemon exports about its process, with `labels`.
pub fn process_families(out: &mut Exposition, labels: &[(&str, &str)]) {
    out.family(
        "process_resident_memory_bytes",
        "Resident memory size in bytes",
        Kind::Gauge,
    )
    .sample(labels, resident_bytes());
    out.family("process_open_fds", "Open file descriptors", Kind::Gauge)
        .sample(labels, open_fds());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_as_the_prometheus_client_libraries() {
        let om = Format::OpenMetrics;
        for (accept, want) in [
            (None, Format::Text),
            (Some(""), Format::Text),
            (Some("*/*"), Format::Text),
            (Some("text/plain"), Format::Text),
            (Some("application/openmetrics-text"), om),
            (Some("Application/OpenMetrics-Text; version=1.0.0"), om),
            (Some("application/openmetrics-text; version=2.0.0"), Format::Text),
            (Some("text/plain;q=0.5, application/openmetrics-text;q=0.6"), om),
            (Some("application/openmetrics-text;q=0.5, text/plain"), Format::Text),
            (Some("application/openmetrics-text;q=0"), Format::Text),
            (Some("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), om),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
    }

    fn write(format: Format) -> String {
        let mut out = Exposition::new(format, 0);
        out.family("jobs", "Jobs \"done\"\\now", Kind::Counter)
            .sample(&[("queue", "a\"b\\c\nd"), ("node", "n")], 3u64)
            .sample(&[], 4u64);
        out.family("ratio", "A ratio", Kind::Gauge)
            .sample(&[], 0.25)
            .sample(&[("x", "y")], f64::INFINITY)
            .sample(&[("x", "z")], -2i64);
        out.family("empty", "No samples", Kind::Gauge);
        out.finish()
    }

    #[test]
    fn writes_each_format() {
        let samples = "jobs_total{queue=\"a\\\"b\\\\c\\nd\",node=\"n\"} 3\njobs_total 4\n";
        let gauges = "# TYPE ratio gauge\nratio 0.25\nratio{x=\"y\"} +Inf\nratio{x=\"z\"} -2\n\
                      # HELP empty No samples\n# TYPE empty gauge\n";
        assert_eq!(
            write(Format::Text),
            format!(
                "# HELP jobs_total Jobs \"done\"\\\\now\n# TYPE jobs_total counter\n{samples}\
                 # HELP ratio A ratio\n{gauges}"
            )
        );
        assert_eq!(
            write(Format::OpenMetrics),
            format!(
                "# HELP jobs Jobs \\\"done\\\"\\\\now\n# TYPE jobs counter\n{samples}\
                 # HELP ratio A ratio\n{gauges}# EOF\n"
            )
        );
    }
}
