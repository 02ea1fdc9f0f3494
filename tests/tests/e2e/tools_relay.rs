//! The relaying tools (`nsq_to_file`, `nsq_to_http`, `nsq_to_nsq`) run as
//! users run them: the built binaries against in-process daemons, a local
//! HTTP server and real files.
//!
//! One file, past 600 lines, because the three relays share their source
//! nsqd setup and their destination checks.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use nsq::protocol::Command;
use nsq_e2e::*;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const EXIT_PATIENCE: Duration = Duration::from_secs(20);

/// Waits until `count` messages went through the channel and every one of
/// them was finished: nothing waiting, nothing in flight.
async fn all_finished(nsqd: &Nsqd, topic: &str, name: &str, count: u64) {
    eventually(
        &format!("{count} messages finished on {topic}/{name}"),
        || async {
            channel_stats(nsqd, topic, name).await.is_some_and(|c| {
                c.message_count >= count
                    && c.depth == 0
                    && c.in_flight_count == 0
                    && c.deferred_count == 0
            })
        },
    )
    .await;
}

async fn mpub(nsqd: &Nsqd, topic: &str, bodies: &[String]) {
    let mut conn = Conn::connect(nsqd).await;
    conn.send(Command::Mpub {
        topic: topic.into(),
        bodies: bodies.iter().map(|b| b.clone().into()).collect(),
    })
    .await;
    conn.expect_response("OK").await;
}

fn numbered(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i:04}")).collect()
}

/// Files under `dir`, sorted by name.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.map(|e| e.expect("dir entry").path()).collect())
        .unwrap_or_default();
    found.retain(|p| p.is_file());
    found.sort();
    found
}

fn file_names(dir: &Path) -> Vec<String> {
    files(dir)
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Every line of every file, files in name order.
fn all_lines(dir: &Path) -> Vec<String> {
    files(dir)
        .iter()
        .flat_map(|p| {
            let text = std::fs::read_to_string(p).expect("read output file");
            text.lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect()
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

async fn stop(tool: ToolProcess) -> ToolExit {
    tool.signal("TERM");
    let exit = tool.wait(EXIT_PATIENCE).await;
    assert!(
        exit.status.success(),
        "exit {:?}; stderr:\n{}",
        exit.status,
        exit.stderr
    );
    exit
}

fn nsqd_flag(nsqd: &Nsqd) -> String {
    format!("--nsqd-tcp-address={}", nsqd.tcp_addr())
}

fn dir_flag(name: &str, dir: &Path) -> String {
    format!("--{name}={}", dir.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_to_file_writes_every_message_once_and_stops_cleanly_on_sigterm() {
    let nsqd = start_default_nsqd().await;
    let dir = temp_dir("to_file_once");
    let before = numbered("before", 0..500);
    mpub(&nsqd, "archive", &before).await;
    let tool = ToolProcess::spawn(
        "nsq_to_file",
        &[
            nsqd_flag(&nsqd),
            "-topic=archive".into(),
            dir_flag("output-dir", &dir),
            "--host-identifier=testhost".into(),
            // Syncs come from the batches, not the timer.
            "--sync-interval=1h".into(),
        ],
    );
    let after = numbered("after", 0..1500);
    for chunk in after.chunks(100) {
        mpub(&nsqd, "archive", chunk).await;
    }
    // Everything has reached the tool (some may still be in flight) when
    // SIGTERM arrives; it must sync and finish all of it before exiting.
    eventually("everything delivered", || async {
        channel_stats(&nsqd, "archive", "nsq_to_file")
            .await
            .is_some_and(|c| c.message_count == 2000 && c.depth == 0)
    })
    .await;
    stop(tool).await;
    let c = channel_stats(&nsqd, "archive", "nsq_to_file")
        .await
        .unwrap();
    assert_eq!((c.depth, c.in_flight_count, c.requeue_count), (0, 0, 0));
    let mut expected: Vec<String> = before.into_iter().chain(after).collect();
    expected.sort();
    assert_eq!(sorted(all_lines(&dir)), expected);
    // The default name: <TOPIC>.<HOST><REV>.<DATETIME>.log, <REV> unused.
    for name in file_names(&dir) {
        let datetime = name
            .strip_prefix("archive.testhost.")
            .and_then(|rest| rest.strip_suffix(".log"))
            .unwrap_or_else(|| panic!("unexpected file {name}"));
        assert_eq!(datetime.len(), "2006-01-02_15".len(), "{name}");
    }
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_to_file_rotates_by_size() {
    let nsqd = start_default_nsqd().await;
    let dir = temp_dir("to_file_size");
    let messages = numbered("sized", 0..100);
    mpub(&nsqd, "sized", &messages).await;
    let tool = ToolProcess::spawn(
        "nsq_to_file",
        &[
            nsqd_flag(&nsqd),
            "--topic=sized".into(),
            dir_flag("output-dir", &dir),
            "--filename-format=<TOPIC><REV>.log".into(),
            "--rotate-size=200".into(),
        ],
    );
    all_finished(&nsqd, "sized", "nsq_to_file", 100).await;
    stop(tool).await;
    let names = file_names(&dir);
    // 100 lines of 11 bytes, a new file once one is past 200 bytes.
    let expected: Vec<String> = (0..names.len())
        .map(|i| format!("sized-{i:06}.log"))
        .collect();
    assert_eq!(names, expected);
    assert!(names.len() >= 5, "{names:?}");
    for path in &files(&dir)[..names.len() - 1] {
        let size = std::fs::metadata(path).unwrap().len();
        assert!(
            (201..=211).contains(&size),
            "{} is {size} bytes",
            path.display()
        );
    }
    assert_eq!(sorted(all_lines(&dir)), messages);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_to_file_rotates_by_interval() {
    let nsqd = start_default_nsqd().await;
    let dir = temp_dir("to_file_interval");
    let tool = ToolProcess::spawn(
        "nsq_to_file",
        &[
            nsqd_flag(&nsqd),
            "--topic=timed".into(),
            dir_flag("output-dir", &dir),
            "--filename-format=<TOPIC><REV>.log".into(),
            "--rotate-interval=1s".into(),
            "--sync-interval=100ms".into(),
        ],
    );
    let first = numbered("first", 0..5);
    mpub(&nsqd, "timed", &first).await;
    all_finished(&nsqd, "timed", "nsq_to_file", 5).await;
    // The timer notices the file is older than a second and opens the next.
    eventually("a rotation by interval", || async {
        file_names(&dir).len() >= 2
    })
    .await;
    let second = numbered("second", 0..5);
    mpub(&nsqd, "timed", &second).await;
    all_finished(&nsqd, "timed", "nsq_to_file", 10).await;
    stop(tool).await;
    let names = file_names(&dir);
    assert_eq!(names[..2], ["timed-000000.log", "timed-000001.log"]);
    let first_file = std::fs::read_to_string(dir.join(&names[0])).unwrap();
    assert_eq!(first_file.lines().collect::<Vec<_>>(), first);
    let mut expected: Vec<String> = first.into_iter().chain(second).collect();
    expected.sort();
    assert_eq!(sorted(all_lines(&dir)), expected);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_to_file_closes_the_file_on_sighup() {
    let nsqd = start_default_nsqd().await;
    let dir = temp_dir("to_file_hup");
    let (work, output) = (dir.join("work"), dir.join("out"));
    let tool = ToolProcess::spawn(
        "nsq_to_file",
        &[
            nsqd_flag(&nsqd),
            "--topic=hup".into(),
            dir_flag("output-dir", &output),
            dir_flag("work-dir", &work),
            "--filename-format=<TOPIC><REV>.log".into(),
            "--sync-interval=100ms".into(),
            // Otherwise the timer would open an empty file right away.
            "--skip-empty-files".into(),
        ],
    );
    let first = numbered("first", 0..5);
    mpub(&nsqd, "hup", &first).await;
    all_finished(&nsqd, "hup", "nsq_to_file", 5).await;
    assert_eq!(file_names(&work), ["hup-000000.log"]);
    // Closing moves the file from the work directory to the output directory.
    tool.signal("HUP");
    eventually("the file closed", || async {
        file_names(&output) == ["hup-000000.log"] && file_names(&work).is_empty()
    })
    .await;
    let second = numbered("second", 0..5);
    mpub(&nsqd, "hup", &second).await;
    all_finished(&nsqd, "hup", "nsq_to_file", 10).await;
    assert_eq!(file_names(&work), ["hup-000001.log"]);
    stop(tool).await;
    assert_eq!(file_names(&output), ["hup-000000.log", "hup-000001.log"]);
    let read = |name: &str| std::fs::read_to_string(output.join(name)).unwrap();
    assert_eq!(read("hup-000000.log").lines().collect::<Vec<_>>(), first);
    assert_eq!(read("hup-000001.log").lines().collect::<Vec<_>>(), second);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_to_file_gzip_output_is_concatenated_members_of_the_input() {
    let nsqd = start_default_nsqd().await;
    let dir = temp_dir("to_file_gzip");
    let (work, output) = (dir.join("work"), dir.join("out"));
    let tool = ToolProcess::spawn(
        "nsq_to_file",
        &[
            nsqd_flag(&nsqd),
            "--topic=zipped".into(),
            dir_flag("output-dir", &output),
            dir_flag("work-dir", &work),
            "--filename-format=<TOPIC>/<TOPIC><REV>.log".into(),
            "--gzip".into(),
            "--gzip-level=9".into(),
        ],
    );
    let first = numbered("first", 0..50);
    mpub(&nsqd, "zipped", &first).await;
    all_finished(&nsqd, "zipped", "nsq_to_file", 50).await;
    // While open, the file sits in the work directory.
    assert_eq!(file_names(&work.join("zipped")), ["zipped-000000.log.gz"]);
    let second = numbered("second", 0..50);
    mpub(&nsqd, "zipped", &second).await;
    all_finished(&nsqd, "zipped", "nsq_to_file", 100).await;
    stop(tool).await;

    assert!(file_names(&work.join("zipped")).is_empty());
    assert_eq!(file_names(&output.join("zipped")), ["zipped-000000.log.gz"]);
    let raw = std::fs::read(output.join("zipped/zipped-000000.log.gz")).unwrap();
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(&raw[..])
        .read_to_string(&mut text)
        .expect("concatenated gzip members");
    let expected: Vec<String> = first.iter().chain(&second).cloned().collect();
    assert_eq!(text.lines().collect::<Vec<_>>(), expected);
    // Each sync ended a member: the first member holds only early messages.
    let mut head = String::new();
    flate2::read::GzDecoder::new(&raw[..])
        .read_to_string(&mut head)
        .expect("first member");
    let head: Vec<&str> = head.lines().collect();
    assert!(
        !head.is_empty() && head.len() <= first.len(),
        "{}",
        head.len()
    );
    assert_eq!(head, expected[..head.len()]);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_to_file_topic_pattern_picks_up_new_topics_through_lookupd() {
    let lookupd = start_lookupd().await;
    let nsqd = start_nsqd(options_with_lookupds(&[&lookupd])).await;
    let dir = temp_dir("to_file_pattern");
    mpub(&nsqd, "pat_early", &["early".to_string()]).await;
    let tool = ToolProcess::spawn(
        "nsq_to_file",
        &[
            format!("--lookupd-http-address={}", lookupd.http_addr()),
            "--topic-pattern=^pat_".into(),
            "--topic-refresh=100ms".into(),
            dir_flag("output-dir", &dir),
            "--filename-format=<TOPIC>.log".into(),
        ],
    );
    all_finished(&nsqd, "pat_early", "nsq_to_file", 1).await;
    // Topics made later are found on a refresh; others are left alone.
    mpub(&nsqd, "other_late", &["other".to_string()]).await;
    mpub(&nsqd, "pat_late", &["late".to_string()]).await;
    all_finished(&nsqd, "pat_late", "nsq_to_file", 1).await;
    stop(tool).await;
    assert_eq!(file_names(&dir), ["pat_early.log", "pat_late.log"]);
    assert_eq!(
        std::fs::read_to_string(dir.join("pat_late.log")).unwrap(),
        "late\n"
    );
    assert!(channel_stats(&nsqd, "other_late", "nsq_to_file")
        .await
        .is_none());
    nsqd.shutdown().await;
    lookupd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_to_file_refuses_bad_flags() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--topic=t"],
            "--nsqd-tcp-address or --lookupd-http-address required",
        ),
        (
            &[
                "--topic=t",
                "--nsqd-tcp-address=127.0.0.1:1",
                "--filename-format=<TOPIC>.log",
                "--gzip",
            ],
            "missing <REV> in --filename-format",
        ),
        (
            &[
                "--topic=t",
                "--nsqd-tcp-address=127.0.0.1:1",
                "--gzip-level=10",
            ],
            "invalid --gzip-level value (10), should be 1-9",
        ),
        (
            &["--nsqd-tcp-address=127.0.0.1:1", "--topic-pattern=x"],
            "--lookupd-http-address must be specified when no --topic specified",
        ),
    ];
    for (args, message) in cases {
        let exit = ToolProcess::spawn("nsq_to_file", args)
            .wait(EXIT_PATIENCE)
            .await;
        assert!(!exit.status.success(), "{args:?}");
        assert!(exit.stderr.contains(message), "{args:?}: {}", exit.stderr);
    }
}

/// What the test HTTP server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: String,
}

/// A local HTTP server that records every request and answers 200, except
/// that the first `fail_first` requests to `/flaky` get a 503.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Vec<Seen>>>,
    fail_first: Arc<Mutex<usize>>,
}

impl Recorder {
    async fn serve(&self) -> String {
        async fn record(
            State(recorder): State<Recorder>,
            method: Method,
            uri: Uri,
            headers: HeaderMap,
            body: Bytes,
        ) -> StatusCode {
            let path = uri.path().to_string();
            if path == "/flaky" {
                let mut left = recorder.fail_first.lock().unwrap();
                if *left > 0 {
                    *left -= 1;
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
            }
            recorder.seen.lock().unwrap().push(Seen {
                method,
                path,
                query: uri.query().unwrap_or_default().to_string(),
                headers,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            StatusCode::OK
        }
        let app = axum::Router::new()
            .fallback(record)
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Bodies received per path.
    fn by_path(&self) -> HashMap<String, Vec<String>> {
        let mut paths: HashMap<String, Vec<String>> = HashMap::new();
        for s in self.seen() {
            paths.entry(s.path).or_default().push(s.body);
        }
        for bodies in paths.values_mut() {
            bodies.sort();
        }
        paths
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_to_http_posts_round_robin_with_headers_and_content_type() {
    let nsqd = start_default_nsqd().await;
    let server = Recorder::default();
    let base = server.serve().await;
    let messages = numbered("post", 0..10);
    mpub(&nsqd, "web", &messages).await;
    let tool = ToolProcess::spawn(
        "nsq_to_http",
        &[
            nsqd_flag(&nsqd),
            "--topic=web".into(),
            format!("--post={base}/a"),
            format!("-post={base}/b"),
            "--mode=round-robin".into(),
            "--content-type=text/plain".into(),
            "--header=X-Test: yes".into(),
            "--header=X-Other:two".into(),
            "-n".into(),
            "4".into(),
        ],
    );
    all_finished(&nsqd, "web", "nsq_to_http", 10).await;
    stop(tool).await;
    let paths = server.by_path();
    assert_eq!(paths.len(), 2, "{paths:?}");
    // Round-robin: exactly every other message to each endpoint.
    assert_eq!((paths["/a"].len(), paths["/b"].len()), (5, 5));
    let mut all: Vec<String> = paths.into_values().flatten().collect();
    all.sort();
    assert_eq!(all, messages);
    for seen in server.seen() {
        assert_eq!(seen.method, Method::POST);
        assert_eq!(seen.headers["content-type"], "text/plain");
        assert_eq!(seen.headers["x-test"], "yes");
        assert_eq!(seen.headers["x-other"], "two");
        let agent = seen.headers["user-agent"].to_str().unwrap();
        assert!(agent.starts_with("nsq_to_http v"), "{agent}");
    }
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_to_http_gets_with_the_escaped_message_and_multicasts() {
    let nsqd = start_default_nsqd().await;
    let server = Recorder::default();
    let base = server.serve().await;
    mpub(&nsqd, "get", &["hello world&x=y/é".to_string()]).await;
    let tool = ToolProcess::spawn(
        "nsq_to_http",
        &[
            nsqd_flag(&nsqd),
            "--topic=get".into(),
            format!("--get={base}/get?msg=%s&src=nsq"),
        ],
    );
    all_finished(&nsqd, "get", "nsq_to_http", 1).await;
    stop(tool).await;
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, Method::GET);
    assert_eq!(seen[0].path, "/get");
    assert_eq!(seen[0].query, "msg=hello+world%26x%3Dy%2F%C3%A9&src=nsq");
    assert!(!seen[0].headers.contains_key("content-type"));

    let server = Recorder::default();
    let base = server.serve().await;
    let messages = numbered("fan", 0..3);
    mpub(&nsqd, "fan", &messages).await;
    let tool = ToolProcess::spawn(
        "nsq_to_http",
        &[
            nsqd_flag(&nsqd),
            "--topic=fan".into(),
            format!("--post={base}/one"),
            format!("--post={base}/two"),
            "--mode=multicast".into(),
        ],
    );
    all_finished(&nsqd, "fan", "nsq_to_http", 3).await;
    stop(tool).await;
    let paths = server.by_path();
    assert_eq!(paths["/one"], messages);
    assert_eq!(paths["/two"], messages);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_to_http_requeues_on_5xx_and_delivers_later() {
    let nsqd = start_default_nsqd().await;
    let server = Recorder::default();
    *server.fail_first.lock().unwrap() = 2;
    let base = server.serve().await;
    mpub(&nsqd, "flaky", &["retry me".to_string()]).await;
    let tool = ToolProcess::spawn(
        "nsq_to_http",
        &[
            nsqd_flag(&nsqd),
            "--topic=flaky".into(),
            format!("--post={base}/flaky"),
            "--consumer-opt=default_requeue_delay,50ms".into(),
            "--consumer-opt=backoff_multiplier,50ms".into(),
        ],
    );
    eventually("the message delivered", || async {
        !server.seen().is_empty()
    })
    .await;
    all_finished(&nsqd, "flaky", "nsq_to_http", 1).await;
    let c = channel_stats(&nsqd, "flaky", "nsq_to_http").await.unwrap();
    assert_eq!(c.requeue_count, 2, "each 503 is a requeue in nsqd");
    let exit = stop(tool).await;
    assert!(
        exit.stderr.contains("got status code 503"),
        "{}",
        exit.stderr
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, "retry me");
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_to_http_refuses_bad_flags() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--topic=t", "--nsqd-tcp-address=127.0.0.1:1"],
            "--get or --post required",
        ),
        (
            &[
                "--topic=t",
                "--nsqd-tcp-address=127.0.0.1:1",
                "--get=http://x/",
            ],
            "invalid GET address - must be a printf string",
        ),
        (
            &[
                "--topic=t",
                "--nsqd-tcp-address=127.0.0.1:1",
                "--post=http://x/",
                "--header=nocolon",
            ],
            "--header value format",
        ),
        (
            &[
                "--topic=t",
                "--nsqd-tcp-address=127.0.0.1:1",
                "--post=http://x/",
                "--mode=random",
            ],
            "invalid --mode",
        ),
    ];
    for (args, message) in cases {
        let exit = ToolProcess::spawn("nsq_to_http", args)
            .wait(EXIT_PATIENCE)
            .await;
        assert!(!exit.status.success(), "{args:?}");
        assert!(exit.stderr.contains(message), "{args:?}: {}", exit.stderr);
    }
}

/// Reads `count` messages of `topic` on `nsqd` through a fresh channel.
async fn read_messages(nsqd: &Nsqd, topic: &str, count: usize) -> Vec<String> {
    let mut conn = consumer(nsqd, topic, "check", count as u32).await;
    let mut bodies = Vec::new();
    for _ in 0..count {
        let msg = conn.expect_message().await;
        bodies.push(String::from_utf8_lossy(&msg.body).into_owned());
        conn.fin(msg.id).await;
    }
    conn.expect_silence(Duration::from_millis(200)).await;
    bodies.sort();
    bodies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_to_nsq_copies_with_json_filters_round_robin() {
    let source = start_default_nsqd().await;
    let first = start_default_nsqd().await;
    let second = start_default_nsqd().await;
    let mut bodies: Vec<String> = (1..=6)
        .map(|i| format!(r#"{{"kind":"keep","id":{i},"extra":"drop me"}}"#))
        .collect();
    bodies.push(r#"{"kind":"skip","id":7}"#.into());
    bodies.push("not json".into());
    mpub(&source, "events", &bodies).await;
    let tool = ToolProcess::spawn(
        "nsq_to_nsq",
        &[
            nsqd_flag(&source),
            "--topic=events".into(),
            format!("--destination-nsqd-tcp-address={}", first.tcp_addr()),
            format!("--destination-nsqd-tcp-address={}", second.tcp_addr()),
            "--destination-topic=copied".into(),
            "--mode=round-robin".into(),
            "--require-json-field=kind".into(),
            "--require-json-value=keep".into(),
            "--whitelist-json-field=kind".into(),
            "-white-list-json-field=id".into(),
        ],
    );
    all_finished(&source, "events", "nsq_to_nsq", 8).await;
    stop(tool).await;
    let c = channel_stats(&source, "events", "nsq_to_nsq")
        .await
        .unwrap();
    assert_eq!((c.in_flight_count, c.depth, c.requeue_count), (0, 0, 0));
    // Six kept, trimmed to the listed fields, three to each destination.
    assert_eq!(topic_message_count(&first, "copied").await, 3);
    assert_eq!(topic_message_count(&second, "copied").await, 3);
    let mut copied = read_messages(&first, "copied", 3).await;
    copied.extend(read_messages(&second, "copied", 3).await);
    copied.sort();
    let expected: Vec<String> = (1..=6)
        .map(|i| format!(r#"{{"id":{i},"kind":"keep"}}"#))
        .collect();
    assert_eq!(copied, expected);
    for nsqd in [source, first, second] {
        nsqd.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_to_nsq_requeues_what_a_destination_refuses() {
    let source = start_default_nsqd().await;
    let live = start_default_nsqd().await;
    // A destination nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let messages = numbered("copy", 0..20);
    mpub(&source, "relay", &messages).await;
    let tool = ToolProcess::spawn(
        "nsq_to_nsq",
        &[
            nsqd_flag(&source),
            "--topic=relay".into(),
            format!("--destination-nsqd-tcp-address={dead_addr}"),
            format!("--destination-nsqd-tcp-address={}", live.tcp_addr()),
            "--consumer-opt=default_requeue_delay,50ms".into(),
            "--consumer-opt=backoff_multiplier,50ms".into(),
        ],
    );
    eventually("every message copied", || async {
        topic_message_count(&live, "relay").await == 20
    })
    .await;
    all_finished(&source, "relay", "nsq_to_nsq", 20).await;
    stop(tool).await;
    let c = channel_stats(&source, "relay", "nsq_to_nsq").await.unwrap();
    assert!(c.requeue_count >= 1, "the failed publish was requeued");
    assert_eq!(read_messages(&live, "relay", 20).await, messages);
    source.shutdown().await;
    live.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_tools_print_their_version() {
    for name in ["nsq_to_file", "nsq_to_http", "nsq_to_nsq"] {
        let exit = ToolProcess::spawn(name, &["-version"])
            .wait(EXIT_PATIENCE)
            .await;
        assert!(exit.status.success());
        assert_eq!(exit.stdout.trim(), format!("{name} v1.3.0 (rust)"));
    }
}
