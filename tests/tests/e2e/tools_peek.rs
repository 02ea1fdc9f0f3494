//! `nsq_tail --peek`, run as users run it: the built binary prints a
//! channel's next messages on each nsqd, found directly or through lookupd,
//! and leaves them queued.

use nsq_e2e::*;
use std::time::Duration;

const TOOL_PATIENCE: Duration = Duration::from_secs(15);

async fn nsq_tail(args: &[String]) -> ToolExit {
    ToolProcess::spawn("nsq_tail", args)
        .wait(TOOL_PATIENCE)
        .await
}

/// Publishes `bodies` to `topic`, whose channel `channel` keeps them.
async fn queue(nsqd: &Nsqd, topic: &str, channel: &str, bodies: &[&str]) {
    let http = nsqd.http_addr().expect("HTTP").to_string();
    create_channel(&http, topic, channel).await;
    let mut conn = Conn::connect(nsqd).await;
    for body in bodies {
        conn.publish(topic, body.as_bytes()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_tail_peek_prints_the_next_messages_and_leaves_them() {
    let lookupd = start_lookupd().await;
    let nsqd = start_nsqd(options_with_lookupds(&[&lookupd])).await;
    queue(&nsqd, "events", "archive", &["e1", "e2", "e3", "e4", "e5"]).await;
    queue(&nsqd, "audit", "archive", &["a1"]).await;
    let lookup = nsq::LookupdHttp::new(&lookupd.http_addr().to_string());
    eventually("lookupd knows both topics", || async {
        let mut known = 0;
        for topic in ["events", "audit"] {
            if lookup
                .lookup(topic)
                .await
                .is_ok_and(|l| !l.producers.is_empty())
            {
                known += 1;
            }
        }
        known == 2
    })
    .await;
    let http = nsqd.http_addr().unwrap().to_string();

    // Straight from nsqd: the first -n, in delivery order.
    let out = nsq_tail(&[
        "--peek".into(),
        format!("--nsqd-http-address={http}"),
        "--topic=events".into(),
        "--channel=archive".into(),
        "-n".into(),
        "3".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "e1\ne2\ne3\n");
    assert!(
        out.stderr
            .contains(&format!("{http}: events/archive: the next 3 of 5 queued")),
        "{}",
        out.stderr
    );

    // Through lookupd, two topics, with their names; 10 by default.
    let out = nsq_tail(&[
        "-peek".into(),
        format!("-lookupd-http-address={}", lookupd.http_addr()),
        "-topic=events".into(),
        "-topic=audit".into(),
        "-channel=archive".into(),
        "-print-topic".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "events | e1\nevents | e2\nevents | e3\nevents | e4\nevents | e5\naudit | a1\n"
    );

    // A channel the node lacks is said, not an error.
    let out = nsq_tail(&[
        "--peek".into(),
        format!("--nsqd-http-address={http}"),
        "--topic=events".into(),
        "--channel=nobody".into(),
    ])
    .await;
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("no channel events/nobody"),
        "{}",
        out.stderr
    );

    // Nothing was taken: a consumer gets all of it, first attempts.
    let channel = channel_stats(&nsqd, "events", "archive").await.unwrap();
    assert_eq!((channel.depth, channel.in_flight_count), (5, 0));
    let mut conn = consumer(&nsqd, "events", "archive", 5).await;
    for expected in ["e1", "e2", "e3", "e4", "e5"] {
        let m = conn.expect_message().await;
        assert_eq!((body_of(&m), m.attempts), (expected, 1));
    }
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsq_tail_peek_refuses_what_it_cannot_do() {
    let nsqd = start_default_nsqd().await;
    let http = nsqd.http_addr().unwrap().to_string();
    for (args, error) in [
        (vec!["--topic=t".to_string()], "--peek needs --channel"),
        (
            vec![
                "--topic=t".into(),
                "--channel=c".into(),
                format!("--nsqd-tcp-address={}", nsqd.tcp_addr()),
            ],
            "--peek reads nsqd's HTTP API",
        ),
        (
            vec![
                "--topic=t".into(),
                "--channel=c".into(),
                format!("--nsqd-http-address={http}"),
                "-n".into(),
                "101".into(),
            ],
            "with --peek, -n is 1 to 100",
        ),
    ] {
        let mut all = vec!["--peek".to_string()];
        all.extend(args);
        let out = nsq_tail(&all).await;
        assert!(!out.status.success(), "{all:?}");
        assert!(out.stderr.contains(error), "{all:?}: {}", out.stderr);
    }
    // --nsqd-http-address is only for --peek.
    let out = nsq_tail(&[format!("--nsqd-http-address={http}"), "--topic=t".into()]).await;
    assert!(!out.status.success());
    assert!(
        out.stderr.contains("--nsqd-http-address is for --peek"),
        "{}",
        out.stderr
    );

    // An nsqd without /channel/peek (upstream's answers 404 NOT_FOUND).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap().to_string();
    let not_found = capture_body("nsqd/not_found");
    let app = axum::Router::new()
        .fallback(move || async move { (axum::http::StatusCode::NOT_FOUND, not_found) });
    tokio::spawn(async move { axum::serve(listener, app).await });
    let out = nsq_tail(&[
        "--peek".into(),
        format!("--nsqd-http-address={upstream}"),
        "--topic=t".into(),
        "--channel=c".into(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("ERROR: {upstream} has no /channel/peek")),
        "{}",
        out.stderr
    );
    nsqd.shutdown().await;
}
