//! nsqd on unix sockets, as upstream v1.3 listens when `--tcp-address` or
//! `--http-address` is a path: protocol V2 through the client crate and the
//! tools, HTTP, the socket files removed at shutdown, and a stale file refused.

use nsq::protocol::{Command, FrameType, WireMessage};
use nsq_e2e::*;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// One HTTP/1.1 request over the unix socket at `path`: status and body.
async fn http_over_unix(path: &Path, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut stream = UnixStream::connect(path)
        .await
        .expect("connect HTTP socket");
    let request = format!(
        "{method} {target} HTTP/1.1\r\nHost: nsqd\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut answer))
        .await
        .expect("HTTP answer within patience")
        .unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

fn unix_options(dir: &Path) -> Options {
    Options {
        tcp_address: dir.join("nsqd.sock").display().to_string(),
        http_address: dir.join("nsqd-http.sock").display().to_string(),
        ..test_options()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqd_serves_v2_and_http_on_unix_sockets() {
    let dir = temp_dir("unix-sockets");
    let tcp = dir.join("nsqd.sock");
    let http = dir.join("nsqd-http.sock");
    let nsqd = start_nsqd(unix_options(&dir)).await;
    assert_eq!(
        nsqd.tcp_listen_addr(),
        &nsq_daemon::tcp::LocalAddr::Unix(tcp.clone())
    );

    // HTTP: /ping, /pub, and /info without ports, as upstream says -1.
    assert_eq!(
        http_over_unix(&http, "GET", "/ping", "").await,
        (200, "OK".into())
    );
    assert_eq!(
        http_over_unix(&http, "POST", "/pub?topic=unix", "over http").await,
        (200, "OK".into())
    );
    let (status, info) = http_over_unix(&http, "GET", "/info", "").await;
    assert_eq!(status, 200);
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    assert_eq!(
        (info["tcp_port"].as_i64(), info["http_port"].as_i64()),
        (Some(-1), Some(-1))
    );

    // V2 through the client crate: a producer, then a subscriber.
    let producer = nsq::Producer::new(tcp.to_str().unwrap(), nsq::Config::default()).unwrap();
    producer
        .publish("unix", "over v2")
        .await
        .expect("PUB over the unix socket");
    producer.stop().await;
    let config = nsq::Config::default();
    let mut conn = nsq::conn::Connection::connect(tcp.to_str().unwrap(), &config)
        .await
        .expect("connect over the unix socket");
    conn.writer.push(&Command::Sub {
        topic: "unix".into(),
        channel: "c".into(),
    });
    conn.writer.push(&Command::Rdy(2));
    conn.writer.flush().await.unwrap();
    let mut bodies = Vec::new();
    while bodies.len() < 2 {
        let frame = conn.reader.read_frame_within(PATIENCE).await.unwrap();
        if frame.frame_type == FrameType::Message {
            let msg = WireMessage::decode(frame.data).unwrap();
            bodies.push(String::from_utf8_lossy(&msg.body).to_string());
            conn.writer.push(&Command::Fin(msg.id));
            conn.writer.flush().await.unwrap();
        }
    }
    assert_eq!(bodies, ["over http", "over v2"]);
    let (_, stats) = http_over_unix(&http, "GET", "/stats?format=json&topic=unix", "").await;
    let stats: nsq::api::Stats = serde_json::from_str(&stats).unwrap();
    let topic = &stats.topics.unwrap()[0];
    assert_eq!(topic.message_count, 2);
    let client = &topic.channels[0].clients.as_ref().unwrap()[0];
    assert_eq!(client.remote_address, "@", "a unix peer, as Go names it");
    drop(conn);

    nsqd.shutdown().await;
    assert!(
        !tcp.exists() && !http.exists(),
        "socket files removed at shutdown"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// nsq_tail and bench_writer take a socket path for `--nsqd-tcp-address`, as
/// for an address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_take_a_socket_path_for_nsqd() {
    let dir = temp_dir("unix-tools");
    let tcp = dir.join("nsqd.sock");
    let nsqd = start_nsqd(unix_options(&dir)).await;
    let producer = nsq::Producer::new(tcp.to_str().unwrap(), nsq::Config::default()).unwrap();
    producer.publish("tail", "tailed").await.unwrap();
    producer.stop().await;
    let tail = ToolProcess::spawn(
        "nsq_tail",
        &[
            format!("--nsqd-tcp-address={}", tcp.display()),
            "--topic=tail".into(),
            "-n".into(),
            "1".into(),
        ],
    );
    let exit = tail.wait(PATIENCE).await;
    assert!(exit.status.success(), "nsq_tail failed: {}", exit.stderr);
    assert_eq!(exit.stdout.trim(), "tailed");
    // The bench tools too.
    let bench = ToolProcess::spawn(
        "bench_writer",
        &[
            format!("--nsqd-tcp-address={}", tcp.display()),
            "--topic=bench".into(),
            "--runfor=1s".into(),
        ],
    );
    let exit = bench.wait(std::time::Duration::from_secs(30)).await;
    assert!(
        exit.status.success(),
        "bench_writer failed: {}",
        exit.stderr
    );
    let tail = ToolProcess::spawn(
        "nsq_tail",
        &[
            format!("--nsqd-tcp-address={}", tcp.display()),
            "--topic=bench".into(),
            "-n".into(),
            "1".into(),
        ],
    );
    let exit = tail.wait(PATIENCE).await;
    assert!(exit.status.success(), "nsq_tail failed: {}", exit.stderr);
    assert!(
        !exit.stdout.trim().is_empty(),
        "bench_writer published nothing"
    );
    nsqd.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// As Go's listener: an existing file at the path is "address in use", named
/// by its listener, and left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_file_is_refused_and_kept() {
    let dir = temp_dir("unix-stale");
    let stale = dir.join("nsqd.sock");
    std::fs::write(&stale, b"").unwrap();
    let error = match Nsqd::start(unix_options(&dir)).await {
        Ok(nsqd) => {
            nsqd.shutdown().await;
            panic!("nsqd started over an existing file");
        }
        Err(e) => e.to_string(),
    };
    assert!(
        error.starts_with(&format!("TCP: failed to listen on {}", stale.display())),
        "{error}"
    );
    assert!(error.contains("in use"), "{error}");
    assert!(stale.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// As upstream: a unix socket has no port, so nsqd announces the one
/// `--broadcast-tcp-port` gives (nsqlookupd refuses a registration with
/// port 0, and nsqd warns about that at start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqd_on_a_unix_socket_registers_its_broadcast_port() {
    let lookupd = start_lookupd().await;
    let dir = temp_dir("unix-lookupd");
    let nsqd = start_nsqd(Options {
        nsqlookupd_tcp_addresses: vec![lookupd.tcp_addr().to_string()],
        http_address: "127.0.0.1:0".into(),
        broadcast_tcp_port: 4150,
        ..unix_options(&dir)
    })
    .await;
    let http_port = nsqd.http_addr().unwrap().port();
    let nodes = format!("http://{}/nodes", lookupd.http_addr());
    eventually("nsqd registered", || async {
        let Ok(answer) = http_client().get(&nodes).send().await else {
            return false;
        };
        let nodes: nsq::api::NodesResponse = answer.json().await.unwrap_or_default();
        nodes
            .producers
            .iter()
            .any(|p| p.tcp_port == 4150 && p.http_port == http_port)
    })
    .await;
    nsqd.shutdown().await;
    lookupd.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An address without a port is a path by upstream's rule; when nothing is
/// there, the error says what a TCP address looks like.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_without_a_port_gets_a_clear_error() {
    let error = nsq::conn::Connection::connect("localhost", &nsq::Config::default())
        .await
        .err()
        .expect("nothing listens at ./localhost")
        .to_string();
    assert!(error.contains("host:port"), "{error}");
}
