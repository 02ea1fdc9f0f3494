//! The bundled tools run as users run them: the built binaries against
//! in-process daemons on loopback.
//!
//! One file, past 600 lines, because the tools share the spawn-and-finish
//! helpers and their daemons.

use nsq_e2e::*;
use std::io::Write;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOOL_PATIENCE: Duration = Duration::from_secs(15);

fn tool(name: &str) -> Command {
    let mut command = Command::new(workspace_binary(name));
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Waits (without blocking the runtime) for the child to exit; kills it and
/// fails if it takes longer than `TOOL_PATIENCE`.
async fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + TOOL_PATIENCE;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            let out = child.wait_with_output().expect("output");
            panic!(
                "tool did not exit; stdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.wait_with_output().expect("output")
}

fn lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}; stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How many nsqd `lookupd` lists for `topic` (0 if it does not know it).
async fn producer_count(lookupd: &nsqlookupd::Lookupd, topic: &str) -> usize {
    let addr = lookupd.http_addr().to_string();
    let lookup = nsq::http_client::api_url(&addr, "/lookup", &[("topic", topic)]).expect("URL");
    let answer: nsq::api::LookupResponse = reqwest::get(lookup)
        .await
        .expect("GET /lookup")
        .json()
        .await
        .unwrap_or_default();
    answer.producers.len()
}

/// Number of channels `topic` has on `nsqd`.
async fn channel_count(nsqd: &Nsqd, topic: &str) -> usize {
    topic_stats(nsqd, topic)
        .await
        .map_or(0, |t| t.channels.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_tail_prints_exactly_n_messages_then_exits() {
    let nsqd = start_default_nsqd().await;
    let child = tool("nsq_tail")
        .arg(format!("--nsqd-tcp-address={}", nsqd.tcp_addr()))
        .args(["-topic=tail_direct", "-n", "5"])
        .spawn()
        .expect("spawn nsq_tail");
    eventually("nsq_tail's channel", || async {
        channel_count(&nsqd, "tail_direct").await == 1
    })
    .await;
    let mut conn = Conn::connect(&nsqd).await;
    for i in 0..10 {
        conn.publish("tail_direct", format!("message {i}").as_bytes())
            .await;
    }
    let out = finish(child).await;
    assert_success(&out);
    let expected: Vec<String> = (0..5).map(|i| format!("message {i}")).collect();
    assert_eq!(lines(&out), expected);
    // Its own lines and the client library's carry one time format.
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.lines().count() >= 2, "{log}");
    for line in log.lines() {
        assert!(
            go_log_line(line, "[nsq_tail] "),
            "not prefix + 2006/01/02 15:04:05.000000: {line}"
        );
    }
    // The channel it made was ephemeral and went away with it.
    eventually("the ephemeral channel to go", || async {
        channel_count(&nsqd, "tail_direct").await == 0
    })
    .await;
    nsqd.shutdown().await;
}

/// Whether `line` is `prefix`, a time as `2006/01/02 15:04:05.000000`, a space.
fn go_log_line(line: &str, prefix: &str) -> bool {
    let Some(rest) = line.strip_prefix(prefix) else {
        return false;
    };
    let shape = "dddd/dd/dd dd:dd:dd.dddddd ";
    rest.len() > shape.len()
        && rest.bytes().zip(shape.bytes()).all(|(c, s)| match s {
            b'd' => c.is_ascii_digit(),
            _ => c == s,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_tail_follows_several_topics_through_lookupd() {
    let lookupd = start_lookupd().await;
    let nsqd = start_nsqd(options_with_lookupds(&[&lookupd])).await;
    // Registered topics, so that lookupd's first answer names this nsqd.
    let mut conn = Conn::connect(&nsqd).await;
    for topic in ["tail_a", "tail_b"] {
        conn.publish(topic, b"first").await;
    }
    eventually("tail_b registered", || async {
        producer_count(&lookupd, "tail_b").await > 0
    })
    .await;

    let child = tool("nsq_tail")
        .arg(format!("--lookupd-http-address={}", lookupd.http_addr()))
        .args([
            "--topic=tail_a",
            "--topic=tail_b",
            "--print-topic",
            "-n",
            "4",
        ])
        .spawn()
        .expect("spawn nsq_tail");
    // Each topic's waiting message reaches the new channel; one more each.
    eventually("both channels", || async {
        channel_count(&nsqd, "tail_a").await == 1 && channel_count(&nsqd, "tail_b").await == 1
    })
    .await;
    for topic in ["tail_a", "tail_b"] {
        conn.publish(topic, b"second").await;
    }
    let out = finish(child).await;
    assert_success(&out);
    let mut got = lines(&out);
    got.sort();
    assert_eq!(
        got,
        [
            "tail_a | first",
            "tail_a | second",
            "tail_b | first",
            "tail_b | second"
        ]
    );
    nsqd.shutdown().await;
    lookupd.shutdown().await;
}

/// Runs to_nsq with `input` on stdin and waits for it.
async fn to_nsq(args: &[String], input: &[u8]) -> Output {
    let mut child = tool("to_nsq")
        .args(args)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn to_nsq");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    // A writer thread, so that a full pipe never blocks the test.
    std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    finish(child).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_nsq_publishes_every_line_to_every_nsqd() {
    let first = start_default_nsqd().await;
    let second = start_default_nsqd().await;
    let args = vec![
        "--topic=lines".to_string(),
        format!("--nsqd-tcp-address={}", first.tcp_addr()),
        format!("-nsqd-tcp-address={}", second.tcp_addr()),
    ];
    // Empty lines are skipped; the last line needs no newline.
    let out = to_nsq(&args, b"alpha\nbeta\n\ngamma").await;
    assert_success(&out);
    for nsqd in [&first, &second] {
        assert_eq!(topic_message_count(nsqd, "lines").await, 3);
        let mut conn = consumer(nsqd, "lines", "check", 10).await;
        for body in ["alpha", "beta", "gamma"] {
            let msg = conn.expect_message().await;
            assert_eq!(&msg.body[..], body.as_bytes());
            conn.fin(msg.id).await;
        }
    }

    let args = vec![
        "--topic=pieces".to_string(),
        "--delimiter=,".to_string(),
        format!("--nsqd-tcp-address={}", first.tcp_addr()),
    ];
    let out = to_nsq(&args, b"x,y,z,").await;
    assert_success(&out);
    assert_eq!(topic_message_count(&first, "pieces").await, 3);

    let out = to_nsq(&["--topic=t".into(), "--delimiter=ab".into()], b"").await;
    assert!(!out.status.success(), "a two-byte delimiter is refused");
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn to_nsq_rate_limits_publishing() {
    let nsqd = start_default_nsqd().await;
    let args = vec![
        "--topic=slow".to_string(),
        "--rate=20".to_string(),
        format!("--nsqd-tcp-address={}", nsqd.tcp_addr()),
    ];
    let input: String = (0..30).map(|i| format!("m{i}\n")).collect();
    let start = Instant::now();
    let out = to_nsq(&args, input.as_bytes()).await;
    let took = start.elapsed();
    assert_success(&out);
    assert_eq!(topic_message_count(&nsqd, "slow").await, 30);
    // The first goes at once, then one every 50ms: 1.45s at 20/s.
    assert!(took >= Duration::from_millis(1300), "took {took:?}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    nsqd.shutdown().await;
}

/// The figures of an nsq_stat row (everything after the rates), from the
/// nsqds' `/stats` summed as nsq_stat sums them.
async fn expected_row(nsqds: &[&Nsqd], topic: &str, channel: &str) -> Vec<i64> {
    let mut sum = vec![0i64; 9];
    for nsqd in nsqds {
        let stats = stats(nsqd).await;
        let c = stats
            .topics
            .unwrap_or_default()
            .into_iter()
            .find(|t| t.topic_name == topic)
            .and_then(|t| t.channels.into_iter().find(|c| c.channel_name == channel))
            .expect("channel in stats");
        let figures = [
            c.depth,
            c.depth - c.backend_depth,
            c.backend_depth,
            c.in_flight_count,
            c.deferred_count,
            c.requeue_count as i64,
            c.timeout_count as i64,
            c.message_count as i64,
            c.client_count,
        ];
        for (s, f) in sum.iter_mut().zip(figures) {
            *s += f;
        }
    }
    sum
}

/// Splits a row `ingress egress | total mem disk inflt def | req t-o msgs clients`.
fn row_numbers(line: &str) -> Vec<i64> {
    line.split_whitespace()
        .filter(|w| *w != "|")
        .map(|w| w.parse().expect("a number"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_stat_rows_match_stats() {
    let lookupd = start_lookupd().await;
    let first = start_nsqd(options_with_lookupds(&[&lookupd])).await;
    let second = start_nsqd(options_with_lookupds(&[&lookupd])).await;
    // first: 5 published, 2 in flight to a client; second: 3 waiting, 1 deferred.
    let mut reader = consumer(&first, "stat", "ch", 0).await;
    let mut conn = Conn::connect(&first).await;
    for i in 0..5 {
        conn.publish("stat", format!("{i}").as_bytes()).await;
    }
    reader.rdy(2).await;
    reader.expect_message().await;
    reader.expect_message().await;
    let _idle = consumer(&second, "stat", "ch", 0).await;
    let mut conn = Conn::connect(&second).await;
    for i in 0..3 {
        conn.publish("stat", format!("{i}").as_bytes()).await;
    }
    conn.send(nsq::protocol::Command::Dpub {
        topic: "stat".into(),
        delay: Duration::from_secs(60),
        body: "later".into(),
    })
    .await;
    conn.expect_response("OK").await;
    eventually("both nsqds registered", || async {
        producer_count(&lookupd, "stat").await == 2
    })
    .await;
    let expected = expected_row(&[&first, &second], "stat", "ch").await;
    assert_eq!(expected, [6, 6, 0, 2, 1, 0, 0, 9, 2]);

    let direct = vec![
        format!("--nsqd-http-address={}", first.http_addr().unwrap()),
        format!("--nsqd-http-address={}", second.http_addr().unwrap()),
    ];
    let via_lookupd = vec![format!("--lookupd-http-address={}", lookupd.http_addr())];
    for sources in [direct, via_lookupd] {
        let child = tool("nsq_stat")
            .args(&sources)
            .args([
                "--topic=stat",
                "--channel=ch",
                "--interval=100ms",
                "--count=2",
            ])
            .spawn()
            .expect("spawn nsq_stat");
        let out = finish(child).await;
        assert_success(&out);
        let got = lines(&out);
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got[0].starts_with("------rate------+"), "{got:?}");
        assert!(got[1].starts_with("ingress  egress |   total"), "{got:?}");
        for row in &got[2..] {
            let numbers = row_numbers(row);
            // Nothing moves meanwhile: both rates are 0.
            assert_eq!(numbers[..2], [0, 0], "{row}");
            assert_eq!(numbers[2..], expected[..], "{row}");
        }
    }

    let child = tool("nsq_stat")
        .arg(format!(
            "--nsqd-http-address={}",
            first.http_addr().unwrap()
        ))
        .args(["--topic=stat", "--channel=nope", "--count=1"])
        .spawn()
        .expect("spawn nsq_stat");
    let out = finish(child).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed to find channel(nope)"));
    first.shutdown().await;
    second.shutdown().await;
    lookupd.shutdown().await;
}

/// A base port N with N, N+1, N+10, N+11 and N+21 free just now, below the
/// kernel's ephemeral range (from 32768 on Linux), where the TIME-WAIT
/// sockets of a busy test run would be in the way.
fn free_port_base() -> u16 {
    let seed =
        std::process::id() as u64 ^ std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos() as u64;
    for attempt in 0..500u64 {
        let base = 10_000 + ((seed + attempt * 7_919) % 22_000) as u16;
        let all_free = [0, 1, 10, 11, 21]
            .iter()
            .map(|offset| std::net::TcpListener::bind(("127.0.0.1", base + offset)))
            .collect::<Result<Vec<_>, _>>()
            .is_ok();
        if all_free {
            return base;
        }
    }
    panic!("no free port range found below 32768");
}

/// `nsq_local` running in `dir` on free ports, all three `/ping`s answering.
/// Ports found free can be taken before nsq_local binds them: then it exits,
/// and another range is tried.
async fn start_nsq_local(dir: &std::path::Path) -> (ToolProcess, u16) {
    let http = reqwest::Client::new();
    for _ in 0..5 {
        let base = free_port_base();
        let mut command = Command::new(workspace_binary("nsq_local"));
        command.arg(format!("--ports-from={base}")).current_dir(dir);
        let mut cluster = ToolProcess::start(command);
        let deadline = Instant::now() + TOOL_PATIENCE;
        let mut pings = [base + 1, base + 11, base + 21].map(|port| (port, false));
        while pings.iter().any(|(_, ok)| !ok) && !cluster.has_exited() {
            assert!(
                Instant::now() < deadline,
                "nsq_local did not answer /ping; stderr:\n{}",
                cluster.stderr()
            );
            for (port, ok) in pings.iter_mut().filter(|(_, ok)| !*ok) {
                let url = format!("http://127.0.0.1:{port}/ping");
                *ok = match http.get(&url).send().await {
                    Ok(r) => r.text().await.is_ok_and(|t| t == "OK"),
                    Err(_) => false,
                };
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if !cluster.has_exited() {
            return (cluster, base);
        }
        eprintln!(
            "nsq_local on {base} exited, trying other ports:\n{}",
            cluster.stderr()
        );
    }
    panic!("nsq_local did not start on five port ranges");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_local_runs_a_cluster_and_stops_on_sigterm() {
    let dir = temp_dir("nsq_local");
    let (cluster, base) = start_nsq_local(&dir).await;
    let (lookupd_http, nsqd_tcp, nsqd_http, admin_http) =
        (base + 1, base + 10, base + 11, base + 21);
    let http = reqwest::Client::new();
    let published = http
        .post(format!("http://127.0.0.1:{nsqd_http}/pub?topic=local"))
        .body("hello world")
        .send()
        .await
        .expect("POST /pub");
    assert_eq!(published.status(), 200);
    let lookup = format!("http://127.0.0.1:{lookupd_http}/lookup?topic=local");
    eventually("nsqd registered in lookupd", || async {
        let Ok(answer) = http.get(&lookup).send().await else {
            return false;
        };
        let answer: nsq::api::LookupResponse = answer.json().await.unwrap_or_default();
        answer
            .producers
            .iter()
            .any(|p| p.tcp_port == nsqd_tcp && p.http_port == nsqd_http)
    })
    .await;
    // nsqadmin sees the topic through lookupd.
    let topics = format!("http://127.0.0.1:{admin_http}/api/topics");
    eventually("nsqadmin lists the topic", || async {
        let Ok(answer) = http.get(&topics).send().await else {
            return false;
        };
        let answer: serde_json::Value = answer.json().await.unwrap_or_default();
        answer["topics"] == serde_json::json!(["local"])
    })
    .await;

    cluster.signal("TERM");
    let out = cluster.wait(TOOL_PATIENCE).await;
    assert!(
        out.status.success(),
        "exit {:?}; stderr:\n{}",
        out.status,
        out.stderr
    );
    // One log, three daemons: each says which one is stopping.
    for daemon in ["nsqadmin", "nsqd", "nsqlookupd"] {
        assert!(
            out.stderr.contains(&format!("{daemon}: shutting down")),
            "{}",
            out.stderr
        );
    }
    let printed = out.stdout;
    assert!(printed.contains(&format!("http://127.0.0.1:{nsqd_http}/pub?topic=test")));
    assert!(printed.contains(&format!("TCP 127.0.0.1:{nsqd_tcp}")));
    assert!(printed.contains(&format!("nsqadmin    http://127.0.0.1:{admin_http}")));
    // The message was saved in the data directory under the working directory.
    let data = dir.join("nsq-data");
    assert!(data.join("nsqd.dat").exists());
    let metadata = std::fs::read_to_string(data.join("nsqd.dat")).expect("nsqd.dat");
    assert!(metadata.contains("\"local\""), "{metadata}");
}

/// A taken port stops nsq_local with a pointer to `--ports-from`, and its
/// log names the daemon that failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_local_points_at_ports_from_when_a_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = temp_dir("nsq_local-taken");
    let out = finish(
        tool("nsq_local")
            .arg(format!("--ports-from={port}"))
            .current_dir(&dir)
            .spawn()
            .expect("spawn nsq_local"),
    )
    .await;
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(out.status.code(), Some(1));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("nsqlookupd failed to start"), "{log}");
    assert!(log.contains("--ports-from=N"), "{log}");
}

/// `--help` lists the flags without the Go-style parser's artefacts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_has_no_parser_noise() {
    for name in [
        "nsqd",
        "nsqlookupd",
        "nsqadmin",
        "nsq_local",
        "nsq_tail",
        "to_nsq",
        "nsq_stat",
        "nsq_to_file",
        "nsq_to_http",
        "nsq_to_nsq",
    ] {
        let out = finish(tool(name).arg("--help").spawn().expect("spawn")).await;
        assert_success(&out);
        let help = String::from_utf8_lossy(&out.stdout);
        // Boolean flags are shown bare (Go-style parsing takes `--version=false`
        // too, but help need not say so), and no default is an empty string.
        assert!(help.contains("--version\n"), "{name}: {help}");
        for noise in ["[default: \"\"]", "--version[", "[=<VERSION>]"] {
            assert!(!help.contains(noise), "{name}: {noise} in\n{help}");
        }
    }
    let out = finish(tool("nsqd").arg("--help").spawn().expect("spawn")).await;
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--snappy\n"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_print_their_version() {
    for name in ["nsq_local", "nsq_tail", "to_nsq", "nsq_stat"] {
        let out = finish(tool(name).arg("-version").spawn().expect("spawn")).await;
        assert_success(&out);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{name} v1.3.0 (rust)")
        );
    }
}

/// `--consumer-opt` and `--producer-opt` take go-nsq's options as name,value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_take_go_nsq_options() {
    let nsqd = start_default_nsqd().await;
    let addr = format!("--nsqd-tcp-address={}", nsqd.tcp_addr());
    // A good producer option is used; a bad one is refused up front.
    let publish = |option: &str, input: &'static [u8]| {
        let args = [
            addr.clone(),
            "--topic=opts".into(),
            format!("--producer-opt={option}"),
        ];
        async move { to_nsq(&args, input).await }
    };
    let out = publish("user_agent,custom-agent", b"one\n").await;
    assert_success(&out);
    assert_eq!(topic_message_count(&nsqd, "opts").await, 1);
    let out = publish("no_such_option,1", b"two\n").await;
    assert!(!out.status.success(), "a bad option must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no_such_option"));

    let child = tool("nsq_tail")
        .arg(&addr)
        .args([
            "--topic=opts",
            "-n",
            "1",
            "--consumer-opt=max_in_flight,7",
            "--consumer-opt=heartbeat_interval,5s",
        ])
        .spawn()
        .expect("spawn nsq_tail");
    // Its channel is the topic's first, so it gets the waiting "one" and exits.
    let out = finish(child).await;
    assert_success(&out);
    assert_eq!(lines(&out), vec!["one".to_string()]);
    nsqd.shutdown().await;
}

/// The `name: value` lines a bench tool prints, as a lookup.
fn report(out: &Output) -> std::collections::HashMap<String, String> {
    lines(out)
        .iter()
        .filter_map(|line| line.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn count(report: &std::collections::HashMap<String, String>, key: &str) -> u64 {
    report
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {report:?}"))
}

/// Every message bench_durable says was acknowledged is one nsqd took, with
/// PUB and with MPUB, on a durable nsqd (an fsync per message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_durable_counts_what_nsqd_took() {
    let nsqd = start_nsqd(Options {
        mem_queue_size: 0,
        sync_every: 1,
        ..test_options()
    })
    .await;
    let addr = format!("--nsqd-tcp-address={}", nsqd.tcp_addr());
    // nsqd runs in this process, so its CPU is this process's.
    let pid = format!("--pid={}", std::process::id());
    for (topic, batch) in [("durable_pub", "1"), ("durable_mpub", "10")] {
        let child = tool("bench_durable")
            .args([
                &addr,
                &pid,
                "--runfor=500ms",
                "--connections=2",
                "--size=50",
            ])
            .arg(format!("--topic={topic}"))
            .arg(format!("--batch-size={batch}"))
            .spawn()
            .expect("spawn bench_durable");
        let out = finish(child).await;
        assert_success(&out);
        let report = report(&out);
        let messages = count(&report, "messages");
        assert!(messages > 0, "{report:?}");
        assert_eq!(messages, topic_message_count(&nsqd, topic).await);
        assert_eq!(
            count(&report, "requests") * batch.parse::<u64>().unwrap(),
            messages
        );
        for key in ["msgs/s", "ack p50", "ack p99", "ack max", "nsqd cpu/msg"] {
            assert!(report.contains_key(key), "no {key} in {report:?}");
        }
    }
    nsqd.shutdown().await;
}

/// bench_latency receives and finishes exactly what it published, and times it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_latency_receives_what_it_published() {
    let nsqd = start_default_nsqd().await;
    let child = tool("bench_latency")
        .arg(format!("--nsqd-tcp-address={}", nsqd.tcp_addr()))
        .arg(format!("--pid={}", std::process::id()))
        .args(["--topic=latency", "--rate=1000", "--runfor=1s"])
        .args(["--producers=2", "--consumers=2", "--rdy=10"])
        .spawn()
        .expect("spawn bench_latency");
    let out = finish(child).await;
    assert_success(&out);
    let report = report(&out);
    let published = count(&report, "published");
    // A second at 1000 a second, give or take the timer's ticks.
    assert!((900..=1100).contains(&published), "{report:?}");
    assert_eq!(published, topic_message_count(&nsqd, "latency").await);
    assert_eq!(count(&report, "received"), published);
    assert!(!report.contains_key("stale"), "{report:?}");
    let p50 = report["latency p50"].trim_end_matches(" ms");
    assert!(p50.parse::<f64>().is_ok(), "{report:?}");
    for key in ["latency p99.9", "latency max", "nsqd cpu/msg"] {
        assert!(report.contains_key(key), "no {key} in {report:?}");
    }
    // Every message was finished.
    eventually("the channel to be empty", || async {
        channel_stats(&nsqd, "latency", "ch")
            .await
            .is_some_and(|c| c.depth == 0 && c.in_flight_count == 0 && c.message_count == published)
    })
    .await;
    nsqd.shutdown().await;
}
