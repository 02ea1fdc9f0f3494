//! `GET /metrics` on nsqd and nsqlookupd end to end, in both of its formats,
//! parsed strictly (here and by Python's prometheus_client) and cross-checked
//! with `/stats`, `/nodes` and `/lookup`.

use nsq_e2e::{
    consumer, eventually, http_url, python_script, start_nsqd, stats, test_options, test_python,
    Conn, Nsqd,
};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

/// A GET with the given `Accept` header: the content type and the body.
async fn get_accepting(url: String, accept: Option<&str>) -> (String, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    let response = request.send().await.expect("GET");
    assert!(response.status().is_success());
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (content_type, response.text().await.expect("body"))
}

/// A parsed exposition: samples by name and sorted labels, and each
/// family's declared type.
#[derive(Debug, Default)]
struct Exposition {
    samples: HashMap<(String, BTreeMap<String, String>), f64>,
    types: HashMap<String, String>,
}

impl Exposition {
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples.get(&(name.to_string(), labels)).copied()
    }
}

/// The two formats of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// OpenMetrics 1.0: counter families named without `_total`, `# EOF` last.
    OpenMetrics,
    /// Prometheus's text format 0.0.4: every family named as its samples.
    Text,
}

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// What Prometheus 2 sends when it scrapes.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A strict parser of either format as far as we emit it: HELP/TYPE before
/// samples, each sample named as its format names its family's (counters
/// suffixed `_total`), quoted and escaped label values, no duplicate
/// series, and `# EOF` exactly where OpenMetrics wants it.
fn parse_exposition(text: &str, format: Format) -> Exposition {
    let mut out = Exposition::default();
    let mut lines = text.lines().peekable();
    let mut eof = false;
    while let Some(line) = lines.next() {
        assert!(!eof, "content after # EOF: {line:?}");
        if line == "# EOF" {
            assert_eq!(format, Format::OpenMetrics, "# EOF in the text format");
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, _) = rest.split_once(' ').expect("HELP name text");
            let ty = lines.next().expect("TYPE after HELP");
            let ty = ty
                .strip_prefix(&format!("# TYPE {name} "))
                .unwrap_or_else(|| panic!("TYPE for {name}, got {ty:?}"));
            assert!(["counter", "gauge"].contains(&ty), "type {ty}");
            if format == Format::Text && ty == "counter" {
                assert!(name.ends_with("_total"), "0.0.4 counter {name}");
            }
            assert!(
                out.types.insert(name.into(), ty.into()).is_none(),
                "{name} twice"
            );
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value in {line:?}"));
        let (name, labels) = match series.split_once('{') {
            None => (series, BTreeMap::new()),
            Some((name, rest)) => (name, parse_labels(rest.strip_suffix('}').expect("}"))),
        };
        let family = out
            .types
            .iter()
            .find(|(f, ty)| match format {
                Format::Text => name == f.as_str(),
                Format::OpenMetrics => {
                    name == f.as_str() && *ty == "gauge"
                        || *ty == "counter" && name.strip_suffix("_total") == Some(f.as_str())
                }
            })
            .map(|(f, _)| f.clone());
        assert!(family.is_some(), "sample {name} without its family");
        let key = (name.to_string(), labels);
        assert!(out.samples.insert(key, value).is_none(), "{line:?} twice");
    }
    assert_eq!(
        eof,
        format == Format::OpenMetrics,
        "# EOF only in OpenMetrics"
    );
    out
}

fn parse_labels(mut rest: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("key=\"");
        assert!(
            key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "label name {key:?}"
        );
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("closing quote") {
                (i, '"') => break i,
                (_, '\\') => match chars.next().expect("escape").1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        rest = &after[end + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    labels
}

/// An OpenMetrics scrape, as Prometheus asks for it.
async fn scrape(base: &str) -> Exposition {
    scrape_as(base, Format::OpenMetrics).await
}

async fn scrape_as(base: &str, format: Format) -> Exposition {
    let (accept, content_type) = match format {
        Format::OpenMetrics => (Some(PROMETHEUS_ACCEPT), OPENMETRICS),
        Format::Text => (None, TEXT),
    };
    let (got, body) = get_accepting(format!("{base}/metrics"), accept).await;
    assert_eq!(got, content_type);
    parse_exposition(&body, format)
}

/// A metric family as Python's prometheus_client read it.
#[derive(Debug, serde::Deserialize)]
struct PyFamily {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

/// The families prometheus_client's parser of `format` reads in `body`, or
/// `None` where there is no Python (outside CI). A refusal fails the test.
fn python_families(body: &str, format: Format) -> Option<Vec<PyFamily>> {
    let python = test_python()?;
    let name = match format {
        Format::OpenMetrics => "openmetrics",
        Format::Text => "text",
    };
    let mut child = python_script(&python, "parse_metrics.py")
        .arg(name)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write the exposition");
    let output = child.wait_with_output().expect("parse_metrics.py");
    assert!(
        output.status.success(),
        "prometheus_client refused the {name} format: {}\n{body}",
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("JSON families"))
}

/// `/metrics` speaks the text format 0.0.4 unless the scraper's `Accept`
/// prefers OpenMetrics, as the Prometheus client libraries negotiate; both
/// formats carry the same samples and satisfy prometheus_client's parsers,
/// the lax 0.0.4 one reading every family typed as we declared it.
async fn speaks_both_formats(base: &str) {
    let url = format!("{base}/metrics");
    for (accept, want) in [
        (None, TEXT),
        (Some("*/*"), TEXT),
        (Some("text/plain"), TEXT),
        (
            Some("text/plain;version=0.0.4;q=0.9,application/openmetrics-text;q=0.5"),
            TEXT,
        ),
        (
            Some("application/openmetrics-text;q=0,text/plain;q=0.1"),
            TEXT,
        ),
        (Some("application/json"), TEXT),
        (Some("application/openmetrics-text"), OPENMETRICS),
        (
            Some("application/openmetrics-text; version=1.0.0"),
            OPENMETRICS,
        ),
        (Some(PROMETHEUS_ACCEPT), OPENMETRICS),
    ] {
        assert_eq!(
            get_accepting(url.clone(), accept).await.0,
            want,
            "{accept:?}"
        );
    }
    let (_, text) = get_accepting(url.clone(), None).await;
    let (_, openmetrics) = get_accepting(url, Some(PROMETHEUS_ACCEPT)).await;
    // The process figures move between two scrapes; nothing else does here.
    let steady = |e: Exposition| -> BTreeMap<_, _> {
        e.samples
            .into_iter()
            .filter(|((name, _), _)| !name.starts_with("process_"))
            .map(|(key, value)| (key, value.to_string()))
            .collect()
    };
    let text_samples = steady(parse_exposition(&text, Format::Text));
    assert!(!text_samples.is_empty());
    assert_eq!(
        text_samples,
        steady(parse_exposition(&openmetrics, Format::OpenMetrics))
    );
    let Some(families) = python_families(&text, Format::Text) else {
        return;
    };
    for family in &families {
        assert!(
            ["counter", "gauge"].contains(&family.kind.as_str()),
            "prometheus_client read {} as {}: {text}",
            family.name,
            family.kind
        );
        let suffix = if family.kind == "counter" {
            "_total"
        } else {
            ""
        };
        for (name, _, _) in &family.samples {
            assert_eq!(*name, format!("{}{suffix}", family.name));
        }
    }
    let python_samples = |families: Vec<PyFamily>| -> BTreeMap<_, _> {
        families
            .into_iter()
            .flat_map(|f| f.samples)
            .filter(|(name, _, _)| !name.starts_with("process_"))
            .map(|(name, labels, value)| ((name, labels), value.to_string()))
            .collect()
    };
    assert_eq!(python_samples(families), text_samples);
    let families = python_families(&openmetrics, Format::OpenMetrics).expect("Python");
    assert_eq!(python_samples(families), text_samples);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqd_metrics_agree_with_stats() {
    let mut opts = test_options();
    opts.e2e_processing_latency_percentiles = vec![0.99];
    let nsqd = start_nsqd(opts).await;
    let base = http_url(&nsqd);
    let client = reqwest::Client::new();
    let _ = client
        .post(format!("{base}/topic/create?topic=idle"))
        .send()
        .await
        .unwrap();
    let mut publisher = Conn::connect(&nsqd).await;
    publisher.publish("t", b"one").await;
    let _ = client
        .post(format!("{base}/channel/create?topic=t&channel=paused"))
        .send()
        .await
        .unwrap();
    let _ = client
        .post(format!("{base}/channel/pause?topic=t&channel=paused"))
        .send()
        .await
        .unwrap();
    let mut sub = consumer(&nsqd, "t", "c", 1).await;
    for body in ["two", "three"] {
        publisher.publish("t", body.as_bytes()).await;
    }
    let msg = sub.expect_message().await;
    sub.fin(msg.id).await;
    let requeued = sub.expect_message().await;
    sub.send(nsq::protocol::Command::Req {
        id: requeued.id,
        delay: Duration::ZERO,
    })
    .await;
    eventually("the FIN and REQ to count", || async {
        let s = stats(&nsqd).await;
        let t = s.topics.unwrap_or_default();
        t.iter()
            .find(|t| t.topic_name == "t")
            .and_then(|t| t.channels.iter().find(|c| c.channel_name == "c"))
            .is_some_and(|c| c.requeue_count == 1 && c.e2e_processing_latency.count > 0)
    })
    .await;

    let m = scrape(&base).await;
    let s = stats(&nsqd).await;
    let node = format!("127.0.0.1:{}", nsqd.http_addr().unwrap().port());
    let node = node.as_str();
    assert_eq!(m.get("nsqd_healthy", &[("node", node)]), Some(1.0));
    assert!(
        m.get("process_resident_memory_bytes", &[("node", node)])
            .unwrap()
            > 0.0
    );
    assert!(m.get("process_open_fds", &[("node", node)]).unwrap() > 0.0);
    let topics = s.topics.as_ref().unwrap();
    assert_eq!(
        m.get("nsqd_topics", &[("node", node)]),
        Some(topics.len() as f64)
    );
    assert_eq!(topics.len(), 2);
    for t in topics {
        let l = [("topic", t.topic_name.as_str()), ("node", node)];
        assert_eq!(m.get("nsqd_topic_depth", &l), Some(t.depth as f64));
        assert_eq!(
            m.get("nsqd_topic_backend_depth", &l),
            Some(t.backend_depth as f64)
        );
        assert_eq!(
            m.get("nsqd_topic_messages_total", &l),
            Some(t.message_count as f64)
        );
        assert_eq!(
            m.get("nsqd_topic_message_bytes_total", &l),
            Some(t.message_bytes as f64)
        );
        assert_eq!(
            m.get("nsqd_topic_backend_corrupt_bytes_total", &l),
            Some(t.backend_corrupt_bytes as f64)
        );
        assert_eq!(m.get("nsqd_topic_paused", &l), Some(f64::from(t.paused)));
        for c in &t.channels {
            let l = [
                ("topic", t.topic_name.as_str()),
                ("channel", c.channel_name.as_str()),
                ("node", node),
            ];
            let want = [
                ("nsqd_channel_depth", c.depth as f64),
                ("nsqd_channel_backend_depth", c.backend_depth as f64),
                ("nsqd_channel_in_flight", c.in_flight_count as f64),
                ("nsqd_channel_deferred", c.deferred_count as f64),
                ("nsqd_channel_messages_total", c.message_count as f64),
                ("nsqd_channel_requeues_total", c.requeue_count as f64),
                ("nsqd_channel_timeouts_total", c.timeout_count as f64),
                ("nsqd_channel_clients", c.client_count as f64),
                (
                    "nsqd_channel_backend_corrupt_bytes_total",
                    c.backend_corrupt_bytes as f64,
                ),
                ("nsqd_channel_paused", f64::from(c.paused)),
            ];
            for (name, value) in want {
                assert_eq!(m.get(name, &l), Some(value), "{name} {l:?}");
            }
        }
    }
    let t = topics.iter().find(|t| t.topic_name == "t").unwrap();
    assert_eq!(t.message_count, 3);
    let c = t.channels.iter().find(|c| c.channel_name == "c").unwrap();
    assert_eq!((c.requeue_count, c.client_count), (1, 1));
    let paused = t
        .channels
        .iter()
        .find(|c| c.channel_name == "paused")
        .unwrap();
    assert!(paused.paused);
    let p = &c.e2e_processing_latency.percentiles.as_ref().unwrap()[0];
    let latency = m
        .get(
            "nsqd_channel_e2e_processing_latency_seconds",
            &[
                ("topic", "t"),
                ("channel", "c"),
                ("node", node),
                ("quantile", "0.99"),
            ],
        )
        .expect("channel latency quantile");
    assert!(latency > 0.0 && (latency - p.value / 1e9).abs() < 1.0);
    assert!(m
        .get(
            "nsqd_topic_e2e_processing_latency_seconds",
            &[("topic", "t"), ("node", node), ("quantile", "0.99")],
        )
        .is_some());
    for (name, ty) in [
        ("nsqd_topic_messages", "counter"),
        ("nsqd_channel_requeues", "counter"),
        ("nsqd_channel_depth", "gauge"),
        ("nsqd_channel_e2e_processing_latency_seconds", "gauge"),
    ] {
        assert_eq!(m.types.get(name).map(String::as_str), Some(ty), "{name}");
    }

    // A deleted channel leaves the exposition with the next scrape.
    let _ = client
        .post(format!("{base}/channel/delete?topic=t&channel=paused"))
        .send()
        .await
        .unwrap();
    let m = scrape(&base).await;
    assert!(m
        .get(
            "nsqd_channel_depth",
            &[("topic", "t"), ("channel", "paused"), ("node", node)]
        )
        .is_none());
    drop(sub);
    nsqd.shutdown().await;
}

/// A scrape of 1000 channels stays cheap even in a debug build (the README
/// reports 10 000 in a release build).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqd_metrics_scrape_many_channels() {
    let nsqd: Nsqd = start_nsqd(test_options()).await;
    let base = http_url(&nsqd);
    let client = reqwest::Client::new();
    for t in 0..10 {
        let create = |path: String| {
            let request = client.post(format!("{base}{path}")).send();
            async move { assert!(request.await.unwrap().status().is_success()) }
        };
        create(format!("/topic/create?topic=topic{t}")).await;
        for c in 0..100 {
            create(format!("/channel/create?topic=topic{t}&channel=channel{c}")).await;
        }
    }
    let started = Instant::now();
    let m = scrape(&base).await;
    let took = started.elapsed();
    assert_eq!(
        m.samples
            .keys()
            .filter(|(name, _)| name == "nsqd_channel_depth")
            .count(),
        1000
    );
    assert!(took < Duration::from_secs(2), "scrape took {took:?}");
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqlookupd_metrics_agree_with_nodes_and_lookup_in_either_format() {
    let lookupd = nsq_e2e::start_lookupd().await;
    let base = format!("http://{}", lookupd.http_addr());
    let opts = nsq_e2e::options_with_lookupds(&[&lookupd]);
    let nsqd = start_nsqd(opts).await;
    let _sub = consumer(&nsqd, "t", "c", 0).await;
    let _ = reqwest::Client::new()
        .post(format!("{base}/topic/create?topic=unclaimed"))
        .send()
        .await
        .unwrap();
    eventually("the channel registration", || async {
        scrape(&base).await.get(
            "nsqlookupd_channel_producers",
            &[("topic", "t"), ("channel", "c")],
        ) == Some(1.0)
    })
    .await;
    let m = scrape(&base).await;
    let nodes: serde_json::Value = reqwest::get(format!("{base}/nodes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let lookup: serde_json::Value = reqwest::get(format!("{base}/lookup?topic=t"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let peers = nodes["producers"].as_array().unwrap().len();
    assert_eq!(peers, 1);
    assert_eq!(m.get("nsqlookupd_peers", &[]), Some(peers as f64));
    assert_eq!(
        m.get("nsqlookupd_topic_producers", &[("topic", "t")]),
        Some(lookup["producers"].as_array().unwrap().len() as f64)
    );
    assert_eq!(
        m.get("nsqlookupd_topic_producers", &[("topic", "unclaimed")]),
        Some(0.0)
    );
    assert!(m.get("process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(m.get("process_open_fds", &[]).unwrap() > 0.0);
    speaks_both_formats(&base).await;
    let m = scrape_as(&base, Format::Text).await;
    assert_eq!(
        m.get("nsqlookupd_topic_producers", &[("topic", "t")]),
        Some(1.0)
    );
    nsqd.shutdown().await;
    lookupd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqd_metrics_in_the_format_the_scraper_asks_for() {
    let mut opts = test_options();
    opts.e2e_processing_latency_percentiles = vec![0.5];
    let nsqd = start_nsqd(opts).await;
    let mut publisher = Conn::connect(&nsqd).await;
    publisher.publish("t", b"one").await;
    let mut sub = consumer(&nsqd, "t", "c", 1).await;
    publisher.publish("t", b"two").await;
    let msg = sub.expect_message().await;
    sub.fin(msg.id).await;
    eventually("the FIN to count", || async {
        let s = stats(&nsqd).await;
        s.topics.unwrap_or_default()[0].channels[0]
            .e2e_processing_latency
            .count
            > 0
    })
    .await;
    let base = http_url(&nsqd);
    speaks_both_formats(&base).await;
    let m = scrape_as(&base, Format::Text).await;
    let node = format!("127.0.0.1:{}", nsqd.http_addr().unwrap().port());
    let l = [("topic", "t"), ("node", node.as_str())];
    assert_eq!(
        m.types.get("nsqd_topic_messages_total").map(String::as_str),
        Some("counter")
    );
    assert_eq!(m.get("nsqd_topic_messages_total", &l), Some(2.0));
    assert_eq!(m.get("nsqd_topic_depth", &l), Some(0.0));
    drop(sub);
    nsqd.shutdown().await;
}
