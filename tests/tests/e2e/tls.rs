//! TLS with a CA made at test time: the IDENTIFY `tls_v1` upgrade (nsqd's OK
//! comes over TLS), `--tls-required` in both modes, mutual TLS, `/stats`,
//! HTTPS, TLS between nsqd and nsqlookupd (ours), and third-party clients.

use bytes::{Bytes, BytesMut};
use nsq::protocol::{decode_frame, Command, Frame, FrameType, IdentifyResponse, MAGIC_V2};
use nsq::tls::TlsClientOptions;
use nsq::{HttpPool, LookupdHttp, NsqdHttp};
use nsq_daemon::tls::ClientAuthPolicy;
use nsq_e2e::{
    eventually, get, http_url, https_url, post, start_nsqd, stats, test_options, Conn, Nsqd,
    Options, TestPki, JSON, NSQ_HEADER, NSQ_HEADER_VALUE, PATIENCE,
};
use nsqd::TlsRequired;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// The next frame from `stream`.
async fn read_frame<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut) -> io::Result<Frame> {
    loop {
        if let Some(frame) = decode_frame(buf, 1 << 20).map_err(io::Error::other)? {
            return Ok(frame);
        }
        let read = tokio::time::timeout(PATIENCE, stream.read_buf(buf))
            .await
            .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        if read == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

fn body(frame: &Frame) -> String {
    String::from_utf8_lossy(&frame.data).into_owned()
}

/// A raw client that asks for TLS in IDENTIFY, runs the handshake and reads
/// nsqd's OK over TLS, as go-nsq does.
async fn connect_tls(
    nsqd: &Nsqd,
    tls: &TlsClientOptions,
) -> io::Result<(TlsStream, IdentifyResponse)> {
    let mut tcp = TcpStream::connect(nsqd.tcp_addr()).await?;
    let identify = Command::Identify(Bytes::from_static(
        br#"{"feature_negotiation":true,"tls_v1":true,"client_id":"raw-tls"}"#,
    ));
    tcp.write_all(&[MAGIC_V2, &identify.to_bytes()[..]].concat())
        .await?;
    let mut buf = BytesMut::new();
    let answer = read_frame(&mut tcp, &mut buf).await?;
    let identity: IdentifyResponse = serde_json::from_slice(&answer.data).expect("JSON");
    assert!(identity.tls_v1, "nsqd agreed to TLS");
    assert!(buf.is_empty(), "nothing plain after the IDENTIFY answer");
    let config = tls.client_config().expect("client TLS config");
    let name = tls.server_name_for("127.0.0.1:0").expect("server name");
    let mut stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let ok = read_frame(&mut stream, &mut buf).await?;
    assert_eq!(
        (ok.frame_type, body(&ok).as_str()),
        (FrameType::Response, "OK")
    );
    Ok((stream, identity))
}

/// PUB over an upgraded connection; the answer frame.
async fn publish_over(stream: &mut TlsStream, topic: &str) -> io::Result<Frame> {
    let cmd = Command::Pub {
        topic: topic.into(),
        body: Bytes::from_static(b"over tls"),
    };
    stream.write_all(&cmd.to_bytes()).await?;
    stream.flush().await?;
    read_frame(stream, &mut BytesMut::new()).await
}

async fn identify_plain(conn: &mut Conn, tls_v1: bool) -> IdentifyResponse {
    let json = format!(r#"{{"feature_negotiation":true,"tls_v1":{tls_v1}}}"#);
    conn.send(Command::Identify(json.into())).await;
    let frame = conn.read_non_heartbeat().await.expect("IDENTIFY answer");
    serde_json::from_slice(&frame.data).expect("IDENTIFY JSON")
}

fn tls_pool(pki: &TestPki, cert: bool) -> HttpPool {
    HttpPool::with_tls(
        Duration::from_secs(2),
        Duration::from_secs(5),
        &pki.client_tls(cert),
    )
    .expect("HTTPS pool")
}

#[tokio::test]
async fn tls_is_optional_unless_required() {
    let pki = TestPki::new();
    let nsqd = start_nsqd(pki.nsqd_options()).await;
    // A plain client that does not ask for TLS is served as before.
    let mut plain = Conn::connect(&nsqd).await;
    assert!(!identify_plain(&mut plain, false).await.tls_v1);
    plain.publish("mixed", b"plain").await;
    let (mut tls, _) = connect_tls(&nsqd, &pki.client_tls(false)).await.unwrap();
    let answer = publish_over(&mut tls, "mixed").await.unwrap();
    assert_eq!(body(&answer), "OK");

    let producers = stats(&nsqd).await.producers.expect("producers");
    let tls_client = producers.iter().find(|p| p.client_id == "raw-tls").unwrap();
    assert!(tls_client.tls && tls_client.tls_negotiated_protocol_is_mutual);
    assert_eq!(tls_client.tls_version, "TLS1.3");
    assert!(
        tls_client.tls_cipher_suite.starts_with("TLS_"),
        "{}",
        tls_client.tls_cipher_suite
    );
    assert_eq!(tls_client.tls_negotiated_protocol, "");
    assert_eq!(tls_client.tls_client_cert_common_name, "");
    let plain_client = producers.iter().find(|p| p.client_id != "raw-tls").unwrap();
    assert!(!plain_client.tls);
    assert_eq!(
        (
            plain_client.tls_version.as_str(),
            plain_client.tls_cipher_suite.as_str()
        ),
        ("", "")
    );
    // Upstream's field names in the raw JSON.
    let raw = get(&nsqd, "/stats?format=json").await;
    for key in [
        "\"tls\":true",
        "\"tls_version\":\"TLS1.3\"",
        "\"tls_negotiated_protocol_is_mutual\":true",
    ] {
        assert!(raw.body.contains(key), "{key} in {}", raw.body);
    }
    nsqd.shutdown().await;

    // Without a certificate nsqd declines TLS and stays plain.
    let nsqd = start_nsqd(test_options()).await;
    let mut conn = Conn::connect(&nsqd).await;
    assert!(!identify_plain(&mut conn, true).await.tls_v1);
    conn.publish("plain", b"still plain").await;
    assert!(nsqd.https_addr().is_none());
    nsqd.shutdown().await;
}

/// A PUB in plain text where TLS is required is refused.
async fn expect_plain_pub_refused(conn: &mut Conn) {
    conn.send(Command::Pub {
        topic: "t".into(),
        body: Bytes::from_static(b"x"),
    })
    .await;
    conn.expect_error("E_INVALID cannot PUB in current state (TLS required)")
        .await;
}

#[tokio::test]
async fn tls_required_refuses_plain_clients_and_plain_http() {
    let pki = TestPki::new();
    let nsqd = start_nsqd(Options {
        tls_required: TlsRequired::Yes,
        ..pki.nsqd_options()
    })
    .await;
    // IDENTIFY is allowed in plain text; anything else is refused, fatally.
    let mut conn = Conn::connect(&nsqd).await;
    assert!(!identify_plain(&mut conn, false).await.tls_v1);
    expect_plain_pub_refused(&mut conn).await;
    conn.expect_closed().await;
    let mut conn = Conn::connect(&nsqd).await;
    conn.send(Command::Nop).await;
    conn.expect_error("E_INVALID cannot NOP in current state (TLS required)")
        .await;
    let mut conn = Conn::connect(&nsqd).await;
    conn.send_raw(b"SUB bad!topic c\n").await;
    conn.expect_error("E_INVALID cannot SUB in current state (TLS required)")
        .await;

    let (mut tls, _) = connect_tls(&nsqd, &pki.client_tls(false)).await.unwrap();
    assert_eq!(body(&publish_over(&mut tls, "t").await.unwrap()), "OK");

    // Plain HTTP answers 403 with the HTTPS port, in upstream's bytes.
    let https_port = nsqd.https_addr().unwrap().port();
    let reply = get(&nsqd, "/ping").await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.body,
        format!(r#"{{"message": "TLS_REQUIRED", "https_port": {https_port}}}"#)
    );
    assert_eq!(reply.header(NSQ_HEADER), Some(NSQ_HEADER_VALUE));
    assert_eq!(reply.header("content-type"), Some(JSON));
    // HTTPS serves the API; our client follows the 403 to it, as upstream's does.
    let pool = tls_pool(&pki, false);
    let https = NsqdHttp::with_pool(&https_url(&nsqd), &pool);
    https.ping().await.unwrap();
    let redirected = NsqdHttp::with_pool(&http_url(&nsqd), &pool);
    redirected.publish("t", "via redirect").await.unwrap();
    let topic = https
        .stats(Some("t"), None, false)
        .await
        .unwrap()
        .topics
        .unwrap();
    assert_eq!(topic[0].message_count, 2);
    assert_eq!(
        https.info().await.unwrap().tcp_port,
        nsqd.tcp_addr().port() as i32
    );
    nsqd.shutdown().await;
}

#[tokio::test]
async fn tcp_https_mode_leaves_plain_http_open() {
    let pki = TestPki::new();
    let nsqd = start_nsqd(Options {
        tls_required: TlsRequired::ExceptHttp,
        ..pki.nsqd_options()
    })
    .await;
    let mut conn = Conn::connect(&nsqd).await;
    expect_plain_pub_refused(&mut conn).await;
    let reply = post(&nsqd, "/pub?topic=t", "x").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, "OK"));
    assert_eq!(get(&nsqd, "/config/tls_required").await.body, "1");
    nsqd.shutdown().await;
}

#[tokio::test]
async fn mutual_tls_needs_a_certificate_from_the_ca() {
    let pki = TestPki::new();
    let nsqd = start_nsqd(pki.nsqd_options_verifying_clients()).await;
    // Asking for client certificates makes TLS required, as upstream.
    let reply = get(&nsqd, "/ping").await;
    assert_eq!(reply.status, 403);

    // No certificate, or one the CA never signed: the handshake (or, with
    // TLS 1.3, the first read after it) fails.
    let refused = |tls: TlsClientOptions| {
        let nsqd = &nsqd;
        async move {
            match connect_tls(nsqd, &tls).await {
                Err(_) => {}
                Ok((mut stream, _)) => assert!(publish_over(&mut stream, "t").await.is_err()),
            }
        }
    };
    refused(pki.client_tls(false)).await;
    refused(TlsClientOptions {
        cert: Some(pki.rogue_cert.clone()),
        key: Some(pki.rogue_key.clone()),
        ..pki.client_tls(false)
    })
    .await;

    let (mut tls, _) = connect_tls(&nsqd, &pki.client_tls(true)).await.unwrap();
    assert_eq!(body(&publish_over(&mut tls, "t").await.unwrap()), "OK");
    let producers = stats_over_https(&nsqd, &pki).await.producers.unwrap();
    assert_eq!(producers.len(), 1);
    assert_eq!(producers[0].tls_client_cert_common_name, "test-client");
    nsqd.shutdown().await;
}

#[tokio::test]
async fn require_policy_takes_any_certificate() {
    let pki = TestPki::new();
    let nsqd = start_nsqd(Options {
        tls_client_auth_policy: ClientAuthPolicy::Require,
        ..pki.nsqd_options()
    })
    .await;
    let rogue = TlsClientOptions {
        cert: Some(pki.rogue_cert.clone()),
        key: Some(pki.rogue_key.clone()),
        ..pki.client_tls(false)
    };
    let (mut tls, _) = connect_tls(&nsqd, &rogue).await.unwrap();
    assert_eq!(body(&publish_over(&mut tls, "t").await.unwrap()), "OK");
    let producers = stats_over_https(&nsqd, &pki).await.producers.unwrap();
    assert_eq!(producers[0].tls_client_cert_common_name, "rogue");
    match connect_tls(&nsqd, &pki.client_tls(false)).await {
        Err(_) => {}
        Ok((mut stream, _)) => assert!(publish_over(&mut stream, "t").await.is_err()),
    }
    nsqd.shutdown().await;
}

#[tokio::test]
async fn bad_tls_settings_stop_nsqd_from_starting() {
    let err = nsqd::Nsqd::start(Options {
        tls_required: TlsRequired::Yes,
        ..test_options()
    })
    .await
    .err()
    .expect("refused");
    assert!(
        err.to_string()
            .contains("cannot require TLS client connections without TLS key and cert"),
        "{err}"
    );
    let err = nsqd::Nsqd::start(Options {
        tls_cert: "/nonexistent/cert.pem".into(),
        tls_key: "/nonexistent/key.pem".into(),
        https_address: "127.0.0.1:0".into(),
        ..test_options()
    })
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}

#[tokio::test]
async fn nsqd_registers_with_lookupd_over_tls() {
    let pki = TestPki::new();
    let lookupd = nsqlookupd::Lookupd::start(nsqlookupd::Options {
        tcp_address: "127.0.0.1:0".into(),
        http_address: "127.0.0.1:0".into(),
        tcp_tls_address: "127.0.0.1:0".into(),
        https_address: "127.0.0.1:0".into(),
        broadcast_address: "127.0.0.1".into(),
        tls_cert: pki.server_cert.display().to_string(),
        tls_key: pki.server_key.display().to_string(),
        tls_client_auth_policy: ClientAuthPolicy::RequireVerify,
        tls_root_ca_file: pki.ca_cert.display().to_string(),
        ..nsqlookupd::Options::default()
    })
    .await
    .expect("lookupd starts");
    let path = |p: &std::path::Path| p.display().to_string();
    let secure = start_nsqd(Options {
        nsqlookupd_tcp_addresses: vec![lookupd.tcp_tls_addr().unwrap().to_string()],
        lookupd_tls: true,
        lookupd_tls_root_ca_file: path(&pki.ca_cert),
        lookupd_tls_cert: path(&pki.client_cert),
        lookupd_tls_key: path(&pki.client_key),
        ..test_options()
    })
    .await;
    // Protocol V1 in plain text still works beside it.
    let plain = start_nsqd(nsq_e2e::options_with_lookupds(&[&lookupd])).await;
    NsqdHttp::new(&http_url(&secure))
        .publish("secured", "x")
        .await
        .unwrap();
    NsqdHttp::new(&http_url(&plain))
        .publish("secured", "y")
        .await
        .unwrap();
    let pool = tls_pool(&pki, true);
    let https =
        LookupdHttp::with_pool(&format!("https://{}", lookupd.https_addr().unwrap()), &pool);
    eventually("both nsqds in lookupd's /lookup over HTTPS", || async {
        let ports: Vec<u16> = https
            .lookup("secured")
            .await
            .map(|l| l.producers.iter().map(|p| p.tcp_port).collect())
            .unwrap_or_default();
        ports.contains(&secure.tcp_addr().port()) && ports.contains(&plain.tcp_addr().port())
    })
    .await;
    // A consumer discovers through lookupd's HTTPS with its own CA and
    // client certificate, and gets both nsqds' messages.
    let consumer = nsq::Consumer::new(
        "secured",
        "c",
        nsq::Config {
            tls: pki.client_tls(true),
            max_in_flight: 10,
            lookupd_poll_interval: Duration::from_millis(200),
            ..nsq::Config::default()
        },
    )
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    consumer
        .add_handler(move |m: nsq::Message| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(m.body().clone());
                Ok::<(), std::convert::Infallible>(())
            }
        })
        .unwrap();
    consumer
        .connect_to_lookupd(&format!("https://{}", lookupd.https_addr().unwrap()))
        .await
        .expect("discovery over HTTPS");
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let body = tokio::time::timeout(PATIENCE, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no message; consumer: {:?}", consumer.stats()))
            .unwrap();
        bodies.push(String::from_utf8(body.to_vec()).unwrap());
    }
    bodies.sort();
    assert_eq!(bodies, ["x", "y"]);
    consumer.stop().await;
    // The TLS listener requires a certificate from the CA: without one, the
    // handshake or the first answer fails.
    let anonymous = pki.client_tls(false);
    let tcp = TcpStream::connect(lookupd.tcp_tls_addr().unwrap())
        .await
        .unwrap();
    let connector = tokio_rustls::TlsConnector::from(anonymous.client_config().unwrap());
    if let Ok(mut stream) = connector
        .connect(anonymous.server_name_for("127.0.0.1:0").unwrap(), tcp)
        .await
    {
        let _ = stream.write_all(b"  V1PING\n").await;
        let _ = stream.flush().await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut answer)).await;
        assert!(
            matches!(read, Ok(Err(_))) || answer.is_empty(),
            "lookupd answered {answer:?}"
        );
    }
    for nsqd in [secure, plain] {
        nsqd.shutdown().await;
    }
    lookupd.shutdown().await;
}

async fn stats_over_https(nsqd: &Nsqd, pki: &TestPki) -> nsq::api::Stats {
    // HTTPS asks for client certificates as the TCP side does.
    NsqdHttp::with_pool(&https_url(nsqd), &tls_pool(pki, true))
        .stats(None, None, true)
        .await
        .expect("stats over HTTPS")
}

/// Our Producer and Consumer over TLS: plain, then snappy, then deflate on top.
#[tokio::test]
async fn our_client_over_tls_with_and_without_compression() {
    let pki = TestPki::new();
    let nsqd = start_nsqd(Options {
        tls_required: TlsRequired::ExceptHttp,
        ..pki.nsqd_options()
    })
    .await;
    let addr = nsqd.tcp_addr().to_string();
    let tls = nsq::Config {
        tls_v1: true,
        tls: pki.client_tls(false),
        output_buffer_timeout: Some(Duration::from_millis(25)),
        ..nsq::Config::default()
    };
    let big = "compressible ".repeat(10_000);
    for (topic, snappy, deflate) in [
        ("tls_plain", false, false),
        ("tls_snappy", true, false),
        ("tls_deflate", false, true),
    ] {
        let config = nsq::Config {
            snappy,
            deflate,
            ..tls.clone()
        };
        let producer = nsq::Producer::new(addr.clone(), config.clone()).unwrap();
        let consumer = nsq::Consumer::new(topic, "ch", config).unwrap();
        let received = Arc::new(Mutex::new(Vec::<Bytes>::new()));
        let sink = received.clone();
        consumer
            .add_handler(move |msg: nsq::Message| {
                sink.lock()
                    .unwrap()
                    .push(Bytes::copy_from_slice(msg.body()));
                std::future::ready(Ok::<_, std::convert::Infallible>(()))
            })
            .unwrap();
        consumer.connect_to_nsqd(&addr).await.unwrap();
        producer
            .multi_publish(topic, (0..20).map(|i| format!("{i} {big}")))
            .await
            .unwrap();
        producer.publish(topic, "last").await.unwrap();
        eventually("every message to arrive", || async {
            received.lock().unwrap().len() == 21
        })
        .await;
        let expected: Vec<String> = (0..20)
            .map(|i| format!("{i} {big}"))
            .chain(["last".to_string()])
            .collect();
        assert_eq!(*received.lock().unwrap(), expected, "in order, once each");
        let snapshot = stats(&nsqd).await;
        let topic_stats = snapshot
            .topics
            .unwrap()
            .into_iter()
            .find(|t| t.topic_name == topic)
            .unwrap();
        let consumer_stats = topic_stats.channels[0].clients.clone().unwrap().remove(0);
        let producer_stats = snapshot
            .producers
            .unwrap()
            .into_iter()
            .find(|p| p.pub_counts.iter().any(|c| c.topic == topic))
            .unwrap();
        for client in [&consumer_stats, &producer_stats] {
            assert!(client.tls, "{client:?}");
            assert_eq!(
                (client.snappy, client.deflate),
                (snappy, deflate),
                "{client:?}"
            );
        }
        consumer.stop().await;
        producer.stop().await;
    }
    nsqd.shutdown().await;
}

#[tokio::test]
async fn our_client_with_and_without_a_client_certificate() {
    let pki = TestPki::new();
    let nsqd = start_nsqd(pki.nsqd_options_verifying_clients()).await;
    let addr = nsqd.tcp_addr().to_string();
    let config = |cert: bool| nsq::Config {
        tls_v1: true,
        tls: pki.client_tls(cert),
        ..nsq::Config::default()
    };
    let anonymous = nsq::Producer::new(addr.clone(), config(false)).unwrap();
    let err = anonymous.publish("t", "x").await.unwrap_err();
    assert!(
        matches!(
            err,
            nsq::Error::Tls { .. } | nsq::Error::Io { .. } | nsq::Error::Closed(_)
        ),
        "{err:?}"
    );
    let known = nsq::Producer::new(addr.clone(), config(true)).unwrap();
    known.publish("t", "x").await.unwrap();
    known.stop().await;
    nsqd.shutdown().await;

    // Asking for TLS from an nsqd without a certificate fails, rather than
    // silently going on in plain text.
    let plain = start_nsqd(test_options()).await;
    let producer = nsq::Producer::new(plain.tcp_addr().to_string(), config(false)).unwrap();
    let err = producer.publish("t", "x").await.unwrap_err();
    assert!(err.to_string().contains("did not agree to TLS"), "{err}");
    plain.shutdown().await;

    // Bad TLS settings are refused when the producer is made.
    let broken = nsq::Config {
        tls_v1: true,
        tls: TlsClientOptions {
            root_ca_file: Some("/nonexistent/ca.pem".into()),
            ..TlsClientOptions::default()
        },
        ..nsq::Config::default()
    };
    let err = nsq::Producer::new(addr, broken).err().expect("refused");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}
