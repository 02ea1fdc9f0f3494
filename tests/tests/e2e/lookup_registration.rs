//! nsqd's side of discovery, against a scripted lookupd that records every
//! command: registration, changes, reconnects, channel pre-creation.

use bytes::BytesMut;
use nsq_daemon::lookup_protocol::{encode_response, PeerIdentity};
use nsq_e2e::*;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What the fake lookupd saw: one line per command, IDENTIFY with its body.
enum Seen {
    Identify(PeerIdentity),
    Line(String),
    Closed,
}

/// A lookupd that answers OK to everything (IDENTIFY with its own JSON,
/// naming `http_port`) and reports each command.
async fn fake_lookupd(
    http_port: u16,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Seen>,
    tokio::sync::watch::Sender<bool>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    // Sending `true` drops the current connection (nsqd must come back).
    let (drop_tx, drop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let mut drop_rx = drop_rx.clone();
            drop_rx.borrow_and_update();
            serve_one(stream, &tx, &mut drop_rx, http_port).await;
            let _ = tx.send(Seen::Closed);
        }
    });
    (addr, rx, drop_tx)
}

async fn serve_one(
    mut stream: TcpStream,
    tx: &mpsc::UnboundedSender<Seen>,
    drop_rx: &mut tokio::sync::watch::Receiver<bool>,
    http_port: u16,
) {
    let mut buf = BytesMut::new();
    loop {
        // Complete commands first.
        if buf.len() >= 4 && &buf[..4] == b"  V1" {
            let _ = buf.split_to(4);
        }
        if let Some(nl) = buf.iter().position(|&b| b == b'\n') {
            let line = String::from_utf8_lossy(&buf[..nl]).into_owned();
            if line == "IDENTIFY" {
                if buf.len() < nl + 5 {
                    if !read_more(&mut stream, &mut buf, drop_rx).await {
                        return;
                    }
                    continue;
                }
                let size = u32::from_be_bytes(buf[nl + 1..nl + 5].try_into().unwrap()) as usize;
                if buf.len() < nl + 5 + size {
                    if !read_more(&mut stream, &mut buf, drop_rx).await {
                        return;
                    }
                    continue;
                }
                let identity: PeerIdentity =
                    serde_json::from_slice(&buf[nl + 5..nl + 5 + size]).unwrap();
                let _ = buf.split_to(nl + 5 + size);
                let _ = tx.send(Seen::Identify(identity));
                let mut out = BytesMut::new();
                let me = format!(
                    r#"{{"tcp_port":1,"http_port":{http_port},"version":"1.3.0","broadcast_address":"127.0.0.1","hostname":"fake"}}"#
                );
                encode_response(&mut out, me.as_bytes());
                let _ = stream.write_all(&out).await;
            } else {
                let _ = buf.split_to(nl + 1);
                let _ = tx.send(Seen::Line(line));
                let mut out = BytesMut::new();
                encode_response(&mut out, b"OK");
                let _ = stream.write_all(&out).await;
            }
            continue;
        }
        if !read_more(&mut stream, &mut buf, drop_rx).await {
            return;
        }
    }
}

async fn read_more(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    drop_rx: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        n = stream.read_buf(buf) => matches!(n, Ok(n) if n > 0),
        _ = drop_rx.changed() => false,
    }
}

async fn next_line(rx: &mut mpsc::UnboundedReceiver<Seen>) -> String {
    loop {
        match tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .expect("a command from nsqd")
            .unwrap()
        {
            Seen::Line(line) if line == "PING" => continue,
            Seen::Line(line) => return line,
            Seen::Identify(_) => return "IDENTIFY".into(),
            Seen::Closed => return "CLOSED".into(),
        }
    }
}

async fn expect_identify(rx: &mut mpsc::UnboundedReceiver<Seen>) -> PeerIdentity {
    match tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("IDENTIFY")
        .unwrap()
    {
        Seen::Identify(identity) => identity,
        Seen::Line(line) => panic!("expected IDENTIFY, got {line}"),
        Seen::Closed => panic!("expected IDENTIFY, got a close"),
    }
}

fn with_lookupd(addrs: &[SocketAddr]) -> Options {
    let mut opts = test_options();
    opts.nsqlookupd_tcp_addresses = addrs.iter().map(|a| a.to_string()).collect();
    opts
}

async fn http_post(url: String) -> u16 {
    reqwest::Client::new()
        .post(url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_everything_and_every_change() {
    let (lookupd, mut seen, drop_conn) = fake_lookupd(1).await;
    // Existing state is registered at connect.
    let opts = with_lookupd(&[lookupd]);
    let nsqd = start_nsqd(opts).await;
    let identity = expect_identify(&mut seen).await;
    assert_eq!(identity.tcp_port, nsqd.tcp_addr().port());
    assert_eq!(identity.http_port, nsqd.http_addr().unwrap().port());
    assert_eq!(
        (
            identity.broadcast_address.as_str(),
            identity.version.as_str()
        ),
        ("127.0.0.1", "1.3.0")
    );

    let mut producer = Conn::connect(&nsqd).await;
    producer.publish("t", b"x").await;
    assert_eq!(next_line(&mut seen).await, "REGISTER t");
    let _consumer = consumer(&nsqd, "t", "c", 0).await;
    assert_eq!(next_line(&mut seen).await, "REGISTER t c");
    let url = http_url(&nsqd);
    assert_eq!(
        http_post(format!("{url}/channel/create?topic=t&channel=d")).await,
        200
    );
    assert_eq!(next_line(&mut seen).await, "REGISTER t d");
    assert_eq!(
        http_post(format!("{url}/channel/delete?topic=t&channel=d")).await,
        200
    );
    assert_eq!(next_line(&mut seen).await, "UNREGISTER t d");

    // Ephemeral registrations come and go with their users.
    let tail = consumer(&nsqd, "e#ephemeral", "c#ephemeral", 0).await;
    assert_eq!(next_line(&mut seen).await, "REGISTER e#ephemeral");
    assert_eq!(
        next_line(&mut seen).await,
        "REGISTER e#ephemeral c#ephemeral"
    );
    drop(tail);
    assert_eq!(
        next_line(&mut seen).await,
        "UNREGISTER e#ephemeral c#ephemeral"
    );
    assert_eq!(next_line(&mut seen).await, "UNREGISTER e#ephemeral");

    // After the connection drops, nsqd comes back and registers everything.
    drop_conn.send(true).unwrap();
    assert_eq!(next_line(&mut seen).await, "CLOSED");
    expect_identify(&mut seen).await;
    assert_eq!(next_line(&mut seen).await, "REGISTER t c");

    assert_eq!(http_post(format!("{url}/topic/delete?topic=t")).await, 200);
    assert_eq!(next_line(&mut seen).await, "UNREGISTER t");
    nsqd.shutdown().await;
}

/// What nsqd and its scripted lookupd keep alive for a test.
type Keep = (
    mpsc::UnboundedReceiver<Seen>,
    tokio::sync::watch::Sender<bool>,
);

/// nsqd registered with a scripted lookupd whose `/channels` answers
/// `channels(topic)` (the topic as lookupd decodes it from the query), and a
/// producer; returned once nsqd has learnt lookupd's HTTP port from the
/// IDENTIFY answer (until then a new topic has no one to ask).
async fn nsqd_asking_lookupd(channels: fn(&str) -> &'static str) -> (Nsqd, Conn, Keep) {
    let asked = Arc::new(AtomicUsize::new(0));
    let count = asked.clone();
    let app = axum::Router::new().route(
        "/channels",
        axum::routing::get(
            move |query: axum::extract::Query<std::collections::HashMap<String, String>>| async move {
                count.fetch_add(1, Ordering::SeqCst);
                let topic = query.get("topic").map_or("", String::as_str);
                (
                    [("X-NSQ-Content-Type", "nsq; version=1.0")],
                    format!(r#"{{"channels":{}}}"#, channels(topic)),
                )
            },
        ),
    );
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http_port = http.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(http, app).await });
    let (lookupd, mut seen, drop) = fake_lookupd(http_port).await;
    let nsqd = start_nsqd(with_lookupd(&[lookupd])).await;
    expect_identify(&mut seen).await;
    // Create throwaway topics until nsqd asks.
    let mut producer = Conn::connect(&nsqd).await;
    for n in 0.. {
        assert!(n < 100, "nsqd never asked lookupd for channels");
        producer.publish(&format!("warmup{n}"), b"x").await;
        if asked.load(Ordering::SeqCst) > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (nsqd, producer, (seen, drop))
}

/// Waits until `topic` has exactly the channels `want`.
async fn expect_channels(nsqd: &Nsqd, topic: &str, want: &[&str]) {
    eventually("channels pre-created from lookupd", || async {
        let topics = stats(nsqd).await.topics.unwrap_or_default();
        topics.iter().any(|t| {
            let names: Vec<&str> = t.channels.iter().map(|c| c.channel_name.as_str()).collect();
            t.topic_name == topic && names == want
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_topics_get_the_channels_lookupd_knows_before_messages_flow() {
    let (nsqd, mut producer, _keep) = nsqd_asking_lookupd(|topic| match topic {
        "new" => r#"["pre","tail#ephemeral"]"#,
        _ => "[]",
    })
    .await;
    producer.publish("new", b"first").await;
    expect_channels(&nsqd, "new", &["pre"]).await;
    // The first message went to the pre-created channel, not lost to it.
    let mut c = consumer(&nsqd, "new", "pre", 1).await;
    assert_eq!(&c.expect_message().await.body[..], b"first");
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookupd_is_asked_about_the_topic_itself_even_an_ephemeral_one() {
    // Unescaped, the `#` of `new#ephemeral` would start a URL fragment and
    // lookupd would hear (and answer for) the topic `new`.
    let (nsqd, mut producer, _keep) = nsqd_asking_lookupd(|topic| match topic {
        "new#ephemeral" => r#"["mine"]"#,
        "new" => r#"["not_mine"]"#,
        _ => "[]",
    })
    .await;
    producer.publish("new#ephemeral", b"x").await;
    expect_channels(&nsqd, "new#ephemeral", &["mine"]).await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookupd_addresses_change_at_run_time_and_an_absent_lookupd_blocks_nothing() {
    // A lookupd that is not there: publishing and consuming go on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let nsqd = start_nsqd(with_lookupd(&[closed])).await;
    let mut c = consumer(&nsqd, "solo", "c", 1).await;
    Conn::connect(&nsqd)
        .await
        .publish("solo", b"still works")
        .await;
    assert_eq!(&c.expect_message().await.body[..], b"still works");

    let (lookupd, mut seen, _drop) = fake_lookupd(1).await;
    let url = format!("{}/config/nsqlookupd_tcp_addresses", http_url(&nsqd));
    let body = format!(r#"["{lookupd}"]"#);
    let answer = reqwest::Client::new()
        .put(&url)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.unwrap(), body);
    expect_identify(&mut seen).await;
    assert_eq!(next_line(&mut seen).await, "REGISTER solo c");
    assert_eq!(
        reqwest::get(&url).await.unwrap().text().await.unwrap(),
        body
    );
    let bad = reqwest::Client::new()
        .put(&url)
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    nsqd.shutdown().await;
}
