//! Compatibility with a real third-party client: pynsq 0.9.1 (the official
//! Python client, on tornado 6) talking to our nsqd over loopback.
//!
//! The scripts under `tests/python/` run with the interpreter of
//! [`test_python`] (`tests/run-all.sh` builds a venv with pynsq and exports it).
//! Each script checks exactly-once delivery itself and exits non-zero otherwise;
//! these tests assert its exit status and then nsqd's own account in `/stats`.

use nsq::protocol::Command;
use nsq_e2e::{
    channel_stats, eventually, python_script, start_default_nsqd, stats, test_python, Conn, Nsqd,
};
use std::io::Read;
use std::path::Path;
use std::process::{Child, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A backstop only: every script stops itself after its own 20 s hard timeout.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(30);

/// A running script whose output is collected in the background, so that a
/// full pipe never blocks it. Dropping it kills the script.
struct Script {
    name: String,
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

struct Outcome {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

impl Script {
    fn start(python: &Path, name: &str, args: &[&str]) -> Script {
        let mut child = python_script(python, name)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {} {name}: {e}", python.display()));
        let stdout = child.stdout.take().map(collect);
        let stderr = child.stderr.take().map(collect);
        Script {
            name: name.to_string(),
            child,
            stdout,
            stderr,
        }
    }

    async fn finish(mut self) -> Outcome {
        let deadline = Instant::now() + SCRIPT_DEADLINE;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for script") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still running after {SCRIPT_DEADLINE:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let join = |handle: Option<JoinHandle<String>>| {
            handle
                .map(|h| h.join().expect("output reader"))
                .unwrap_or_default()
        };
        Outcome {
            status,
            stdout: join(self.stdout.take()),
            stderr: join(self.stderr.take()),
        }
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn assert_succeeded(outcome: &Outcome) {
    assert!(
        outcome.status.success(),
        "script failed with {}\n--- stdout\n{}\n--- stderr\n{}",
        outcome.status,
        outcome.stdout,
        outcome.stderr
    );
}

/// Waits until the channel is drained and nothing is left in flight, then checks
/// that nsqd counted each message once and never requeued or timed one out.
async fn assert_drained(nsqd: &Nsqd, topic: &str, channel: &str, count: u64) {
    eventually("the channel to drain with nothing in flight", || async {
        channel_stats(nsqd, topic, channel)
            .await
            .is_some_and(|c| c.depth == 0 && c.deferred_count == 0 && c.in_flight_count == 0)
    })
    .await;
    let c = channel_stats(nsqd, topic, channel)
        .await
        .expect("channel in /stats");
    assert_eq!(
        (c.message_count, c.requeue_count, c.timeout_count),
        (count, 0, 0),
        "message, requeue and timeout counts: {c:?}"
    );
    let topic_stats = stats(nsqd)
        .await
        .topics
        .unwrap_or_default()
        .into_iter()
        .find(|t| t.topic_name == topic)
        .expect("topic in /stats");
    assert_eq!(topic_stats.message_count, count);
}

/// nsq.Writer publishes with PUB, MPUB and DPUB; an nsq.Reader with
/// max_in_flight 8 receives and FINs each message exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_writer_and_reader_round_trip() {
    let Some(python) = test_python() else { return };
    let nsqd = start_default_nsqd().await;
    let (topic, channel) = ("pynsq_roundtrip", "pynsq");
    let address = nsqd.tcp_addr().to_string();

    let script = Script::start(
        &python,
        "pynsq_roundtrip.py",
        &[
            &address,
            topic,
            "--channel",
            channel,
            "--pub",
            "10",
            "--mpub",
            "10",
            "--dpub",
            "5",
            "--dpub-delay-ms",
            "200",
            "--max-in-flight",
            "8",
        ],
    );
    let outcome = script.finish().await;
    assert_succeeded(&outcome);

    assert_drained(&nsqd, topic, channel, 25).await;
    nsqd.shutdown().await;
}

/// An nsq.Reader receives, exactly once, what a raw protocol V2 client of ours
/// published with PUB and MPUB while the Reader was subscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_reader_receives_what_our_raw_publisher_sent() {
    let Some(python) = test_python() else { return };
    let nsqd = start_default_nsqd().await;
    let (topic, channel) = ("pynsq_from_raw", "py");
    let address = nsqd.tcp_addr().to_string();

    let script = Script::start(
        &python,
        "pynsq_consume.py",
        &[
            &address, topic, channel, "--count", "30", "--prefix", "raw-",
        ],
    );
    eventually("the pynsq Reader to subscribe", || async {
        channel_stats(&nsqd, topic, channel)
            .await
            .is_some_and(|c| c.client_count == 1)
    })
    .await;

    let mut publisher = Conn::connect(&nsqd).await;
    for i in 0..20 {
        publisher
            .publish(topic, format!("raw-{i}").as_bytes())
            .await;
    }
    publisher
        .send(Command::Mpub {
            topic: topic.into(),
            bodies: (20..30).map(|i| format!("raw-{i}").into()).collect(),
        })
        .await;
    publisher.expect_response("OK").await;

    let outcome = script.finish().await;
    assert_succeeded(&outcome);

    assert_drained(&nsqd, topic, channel, 30).await;
    nsqd.shutdown().await;
}

/// An nsq.Reader given only our nsqlookupd finds our nsqd there and consumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_reader_discovers_nsqd_through_our_lookupd() {
    let Some(python) = test_python() else { return };
    let lookupd = nsq_e2e::start_lookupd().await;
    let opts = nsq_e2e::options_with_lookupds(&[&lookupd]);
    let nsqd = nsq_e2e::start_nsqd(opts).await;
    let (topic, channel) = ("pynsq_lookupd", "py");
    let mut publisher = Conn::connect(&nsqd).await;
    for i in 0..10 {
        publisher
            .publish(topic, format!("found-{i}").as_bytes())
            .await;
    }
    let addr = lookupd.http_addr().to_string();
    let lookup = nsq::http_client::api_url(&addr, "/lookup", &[("topic", topic)]).unwrap();
    eventually("nsqd registered with lookupd", || async {
        reqwest::get(lookup.clone())
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    let address = lookupd.http_addr().to_string();
    let script = Script::start(
        &python,
        "pynsq_consume.py",
        &[
            &address,
            topic,
            channel,
            "--count",
            "10",
            "--prefix",
            "found-",
            "--lookupd",
        ],
    );
    let outcome = script.finish().await;
    assert_succeeded(&outcome);
    assert_drained(&nsqd, topic, channel, 10).await;
    nsqd.shutdown().await;
    lookupd.shutdown().await;
}

/// nsq.Writer and nsq.Reader over TLS (`tls_v1`, verifying nsqd against the
/// test CA), then with deflate on top of TLS, against an nsqd that requires
/// TLS on TCP (`tcp-https`, so the checks below can read plain `/stats`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pynsq_over_tls() {
    let Some(python) = test_python() else { return };
    let pki = nsq_e2e::TestPki::new();
    let nsqd = nsq_e2e::start_nsqd(nsqd::Options {
        tls_required: nsqd::TlsRequired::ExceptHttp,
        ..pki.nsqd_options()
    })
    .await;
    let address = nsqd.tcp_addr().to_string();
    let ca = pki.ca_cert.display().to_string();
    for (topic, deflate) in [("pynsq_tls", false), ("pynsq_tls_deflate", true)] {
        let mut args = vec![address.as_str(), topic, "--ca", &ca, "--count", "20"];
        if deflate {
            args.push("--deflate");
        }
        let outcome = Script::start(&python, "pynsq_tls.py", &args).finish().await;
        assert_succeeded(&outcome);
        assert_drained(&nsqd, topic, "py", 20).await;
    }
    nsqd.shutdown().await;
}
