//! Forwards a topic's messages to HTTP endpoints, as upstream's
//! `nsq_to_http`: each message is POSTed as the body (`--post`) or put into a
//! GET URL in place of `%s` (`--get`), to one endpoint chosen by `--mode` or,
//! with `--mode=multicast`, to every endpoint. A message counts as done on a
//! 2xx answer to POST (200 to GET); anything else is an error, and the
//! consumer requeues the message with backoff.

use bytes::Bytes;
use clap::Parser;
use nsq_daemon::flags::parse_duration;
use nsq_daemon::logging::LogLevel;
use nsq_daemon::logging::{LogFormat, Logging};
use nsq_daemon::signals::wait_for_signal;
use nsq_daemon::version_line;
use nsq_tools::consume::{connect, consumer_config, http_client};
use nsq_tools::hostpool::{Balancer, Mode};
use nsq_tools::timer_metrics::TimerMetrics;
use nsq_tools::{check_sources, fatal, Progress};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const PROGRAM: &str = "nsq_to_http";
const PREFIX: &str = "[nsq_to_http] ";
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

#[derive(Debug, Parser)]
#[command(
    name = "nsq_to_http",
    about = "Forwards NSQ messages to HTTP endpoints"
)]
struct Opts {
    /// nsq topic
    #[arg(long, default_value = "")]
    topic: String,
    /// nsq channel
    #[arg(long, default_value = "nsq_to_http")]
    channel: String,
    /// max number of messages to allow in flight
    #[arg(long, default_value_t = 200)]
    max_in_flight: u32,
    /// number of concurrent publishers
    #[arg(short = 'n', default_value_t = 100)]
    n: usize,
    /// the upstream request mode options: round-robin, hostpool (default), epsilon-greedy, multicast
    #[arg(long, default_value = "hostpool")]
    mode: String,
    /// % of messages to publish (float b/w 0 -> 1)
    #[arg(long, default_value_t = 1.0)]
    sample: f64,
    /// timeout for HTTP connect
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    http_client_connect_timeout: Duration,
    /// timeout for HTTP request
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    http_client_request_timeout: Duration,
    /// the # of requests between logging status (per handler), 0 disables
    #[arg(long, default_value_t = 250)]
    status_every: usize,
    /// the Content-Type used for POST requests
    #[arg(long, default_value = DEFAULT_CONTENT_TYPE)]
    content_type: String,
    /// HTTP address to make a POST request to. data will be in the body (may be given multiple times)
    #[arg(long)]
    post: Vec<String>,
    /// HTTP address to make a GET request to. '%s' will be printf replaced with data (may be given multiple times)
    #[arg(long)]
    get: Vec<String>,
    /// Custom header for HTTP requests, as 'key: value' (may be given multiple times)
    #[arg(long)]
    header: Vec<String>,
    /// nsqd TCP address (may be given multiple times)
    #[arg(long)]
    nsqd_tcp_address: Vec<String>,
    /// lookupd HTTP address (may be given multiple times)
    #[arg(long)]
    lookupd_http_address: Vec<String>,
    /// option to passthrough to the consumer as name,value, by go-nsq's names (may be given multiple times)
    #[arg(long)]
    consumer_opt: Vec<String>,
    /// print version string
    #[arg(long)]
    version: bool,
}

/// How each message is sent.
enum Method {
    Post,
    /// The message goes into the URL in place of `%s`, query-escaped.
    Get,
}

/// Checks the flags in upstream's order and builds the request headers.
fn validate(opts: &Opts) -> Result<(Mode, HeaderMap), String> {
    let headers = parse_headers(&opts.header)?;
    if opts.topic.is_empty() || opts.channel.is_empty() {
        return Err("--topic and --channel are required".into());
    }
    if opts.content_type != DEFAULT_CONTENT_TYPE {
        if opts.post.is_empty() {
            return Err("--content-type only used with --post".into());
        }
        if opts.content_type.is_empty() {
            return Err("--content-type requires a value when used".into());
        }
    }
    check_sources(
        "--nsqd-tcp-address",
        &opts.nsqd_tcp_address,
        &opts.lookupd_http_address,
    )?;
    match (opts.get.is_empty(), opts.post.is_empty()) {
        (true, true) => return Err("--get or --post required".into()),
        (false, false) => return Err("use --get or --post not both".into()),
        _ => {}
    }
    for get in &opts.get {
        if get.matches("%s").count() != 1 {
            return Err("invalid GET address - must be a printf string".into());
        }
        check_url(&get.replacen("%s", "x", 1), "--get")?;
    }
    for post in &opts.post {
        check_url(post, "--post")?;
    }
    let mode = Mode::parse(&opts.mode, true)?;
    if mode == Mode::Multicast {
        tracing::warn!(
            "multicast mode is deprecated upstream in favor of one nsq_to_http per channel"
        );
    }
    if !(0.0..=1.0).contains(&opts.sample) {
        return Err("ERROR: --sample must be between 0.0 and 1.0".into());
    }
    if HeaderValue::from_str(&opts.content_type).is_err() {
        return Err(format!(
            "--content-type {:?} is not a valid header value",
            opts.content_type
        ));
    }
    if opts.http_client_connect_timeout.is_zero() || opts.http_client_request_timeout.is_zero() {
        return Err(
            "--http-client-connect-timeout and --http-client-request-timeout should be positive"
                .into(),
        );
    }
    Ok((mode, headers))
}

fn check_url(url: &str, flag: &str) -> Result<(), String> {
    match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(()),
        Ok(_) => Err(format!("{flag} {url:?} is not an http(s) URL")),
        Err(e) => Err(format!("{flag} {url:?} is not a valid URL: {e}")),
    }
}

/// `--header 'Name: value'`, each trimmed; neither part may be empty.
fn parse_headers(flags: &[String]) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for flag in flags {
        let bad = || format!("--header value format should be 'key: value' (got {flag:?})");
        let (name, value) = flag.split_once(':').ok_or_else(bad)?;
        let (name, value) = (name.trim(), value.trim());
        if name.is_empty() || value.is_empty() {
            return Err(bad());
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_str(value).map_err(|_| bad())?;
        headers.insert(name, value);
    }
    Ok(headers)
}

/// Go's `url.QueryEscape`: letters, digits and `-_.~` stay, space becomes
/// `+`, every other byte `%XX`.
fn query_escape(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len() * 3);
    for &b in data {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Sends each message to its endpoint(s).
struct Forwarder {
    client: reqwest::Client,
    method: Method,
    addresses: Vec<String>,
    mode: Mode,
    balancer: Balancer,
    headers: HeaderMap,
    sample: f64,
    per_address: Vec<TimerMetrics>,
    aggregate: TimerMetrics,
    delivered: Arc<AtomicU64>,
}

impl Forwarder {
    async fn handle(&self, msg: nsq::Message) -> Result<(), String> {
        if self.sample < 1.0 && rand::random::<f64>() > self.sample {
            return Ok(());
        }
        let started = Instant::now();
        if self.mode == Mode::Multicast {
            for index in 0..self.addresses.len() {
                let at = Instant::now();
                self.send(index, msg.body()).await?;
                self.per_address[index].status(at);
            }
        } else {
            let index = self.balancer.pick();
            let result = self.send(index, msg.body()).await;
            self.balancer.mark(index, started, result.is_ok());
            result?;
            self.per_address[index].status(started);
        }
        self.aggregate.status(started);
        self.delivered.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn send(&self, index: usize, body: &Bytes) -> Result<(), String> {
        let address = &self.addresses[index];
        let request = match self.method {
            Method::Post => self.client.post(address).body(body.clone()),
            Method::Get => self
                .client
                .get(address.replacen("%s", &query_escape(body), 1)),
        };
        let response = request
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| format!("{address}: {e}"))?;
        let status = response.status();
        // Read the answer to its end so that the connection can be reused.
        let _ = response.bytes().await;
        let ok = match self.method {
            Method::Post => status.is_success(),
            Method::Get => status == reqwest::StatusCode::OK,
        };
        if !ok {
            return Err(format!("{address}: got status code {}", status.as_u16()));
        }
        Ok(())
    }
}

#[tokio::main]
async fn main() {
    let opts = nsq_daemon::flags::parse::<Opts>(std::env::args_os());
    if opts.version {
        println!("{}", version_line(PROGRAM));
        return;
    }
    let _logging = Logging::init(LogLevel::Info, PREFIX, LogFormat::Text);
    let (mode, mut headers) = validate(&opts).unwrap_or_else(|e| fatal(PREFIX, e));
    let (method, addresses) = match opts.post.is_empty() {
        false => (Method::Post, opts.post.clone()),
        true => (Method::Get, opts.get.clone()),
    };
    // Upstream's own headers first; --header may override them.
    let mut request_headers = HeaderMap::new();
    let agent = format!("{PROGRAM} v{}", nsq_daemon::VERSION);
    request_headers.insert(USER_AGENT, HeaderValue::from_str(&agent).expect("ASCII"));
    if matches!(method, Method::Post) {
        let content_type = HeaderValue::from_str(&opts.content_type).expect("validated");
        request_headers.insert(CONTENT_TYPE, content_type);
    }
    for (name, value) in headers.drain() {
        if let Some(name) = name {
            request_headers.insert(name, value);
        }
    }
    let config = consumer_config(PROGRAM, &opts.consumer_opt, opts.max_in_flight)
        .unwrap_or_else(|e| fatal(PREFIX, e));
    let client = http_client(
        opts.http_client_connect_timeout,
        opts.http_client_request_timeout,
    )
    .unwrap_or_else(|e| fatal(PREFIX, e));

    // With one endpoint the per-address line would repeat the aggregate one.
    let per_address_every = if addresses.len() == 1 {
        0
    } else {
        opts.status_every
    };
    let delivered = Arc::new(AtomicU64::new(0));
    let forwarder = Arc::new(Forwarder {
        client,
        method,
        per_address: addresses
            .iter()
            .map(|a| TimerMetrics::new(per_address_every, format!("[{a}]:")))
            .collect(),
        balancer: Balancer::new(mode, addresses.len()),
        addresses,
        mode,
        headers: request_headers,
        sample: opts.sample,
        aggregate: TimerMetrics::new(opts.status_every, "[aggregate]:"),
        delivered: delivered.clone(),
    });

    let consumer =
        nsq::Consumer::new(&opts.topic, &opts.channel, config).unwrap_or_else(|e| fatal(PREFIX, e));
    consumer
        .add_concurrent_handlers(
            move |msg: nsq::Message| {
                let forwarder = forwarder.clone();
                async move { forwarder.handle(msg).await }
            },
            opts.n.max(1),
        )
        .unwrap_or_else(|e| fatal(PREFIX, e));
    if let Err(e) = connect(
        &consumer,
        &opts.nsqd_tcp_address,
        &opts.lookupd_http_address,
    )
    .await
    {
        fatal(PREFIX, e);
    }
    let progress = Progress::start(PREFIX, delivered);
    wait_for_signal().await;
    consumer.stop().await;
    progress.finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_escape_as_go() {
        assert_eq!(query_escape(b"a b&c=d/e~f"), "a+b%26c%3Dd%2Fe~f");
        assert_eq!(query_escape("é".as_bytes()), "%C3%A9");
        assert_eq!(query_escape(b"\n"), "%0A");
    }

    #[test]
    fn headers_parse() {
        let h = parse_headers(&[" X-One : 1 ".into(), "Authorization: Bearer a:b".into()]).unwrap();
        assert_eq!(h["x-one"], "1");
        assert_eq!(h["authorization"], "Bearer a:b");
        for bad in ["nocolon", ": v", "k:", "bad name: v"] {
            assert!(parse_headers(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
