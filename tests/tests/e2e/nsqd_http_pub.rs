//! Publishing over nsqd's HTTP API, end to end: `/pub` (with defer) and
//! `/mpub` (lines and binary), their limits and refusals as upstream v1.3.0
//! answers them, and what TCP consumers then receive.

use nsq_e2e::*;
use std::time::{Duration, Instant};

/// An nsqd that takes messages of up to 100 bytes and bodies of up to 1000.
async fn start_small_nsqd() -> Nsqd {
    start_nsqd(Options {
        max_msg_size: 100,
        max_body_size: 1000,
        ..test_options()
    })
    .await
}

/// Binary `/mpub` body: `[count]([size][bytes])*`, no leading total size.
fn binary_mpub(bodies: &[&[u8]]) -> Vec<u8> {
    let mut out = (bodies.len() as u32).to_be_bytes().to_vec();
    for body in bodies {
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        out.extend_from_slice(body);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_accepts_a_message_and_refuses_bad_requests() {
    let nsqd = start_default_nsqd().await;
    let mut consumer = consumer(&nsqd, "test", "c", 10).await;

    assert_like_capture(
        &post(&nsqd, "/pub?topic=test", "hello").await,
        "nsqd/pub",
        Same::Body,
    );
    consumer.expect_bodies(&["hello"]).await;

    let empty = post(&nsqd, "/pub?topic=test", "").await;
    assert_like_capture(&empty, "nsqd/pub_empty_body", Same::Body);
    assert_v1_error(&empty, 400, "MSG_EMPTY");
    let missing = post(&nsqd, "/pub", "x").await;
    assert_like_capture(&missing, "nsqd/pub_missing_topic", Same::Body);
    assert_v1_error(&missing, 400, "MISSING_ARG_TOPIC");
    let bad = post(&nsqd, "/pub?topic=bad!name", "x").await;
    assert_like_capture(&bad, "nsqd/pub_bad_topic", Same::Body);
    assert_v1_error(&bad, 400, "INVALID_TOPIC");
    // Present but empty is invalid, not missing.
    assert_v1_error(&post(&nsqd, "/pub?topic=", "x").await, 400, "INVALID_TOPIC");
    assert_v1_error(
        &post(&nsqd, "/pub?topic=%zz", "x").await,
        400,
        "INVALID_REQUEST",
    );
    // The body is checked before the query.
    assert_v1_error(&post(&nsqd, "/pub?topic=%zz", "").await, 400, "MSG_EMPTY");
    assert_v1_error(&post(&nsqd, "/pub", "").await, 400, "MSG_EMPTY");
    // Query parameters are decoded: `%21` is `!`.
    assert_v1_error(
        &post(&nsqd, "/pub?topic=a%21", "x").await,
        400,
        "INVALID_TOPIC",
    );
    assert_v1_text(&post(&nsqd, "/pub?topic=t%65st", "decoded").await, "OK");
    consumer.expect_bodies(&["decoded"]).await;

    // A refused publish creates no topic.
    let stats = stats(&nsqd).await;
    let names: Vec<&str> = stats
        .topics
        .iter()
        .flatten()
        .map(|t| t.topic_name.as_str())
        .collect();
    assert_eq!(names, ["test"]);
    assert_eq!(topic_stats(&nsqd, "test").await.unwrap().message_count, 2);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_refuses_a_message_over_max_msg_size_by_length_or_by_reading() {
    let nsqd = start_nsqd(Options {
        max_msg_size: 100,
        ..test_options()
    })
    .await;
    let exact = "x".repeat(100);
    let over = "x".repeat(101);
    assert_v1_text(&post(&nsqd, "/pub?topic=big", exact.clone()).await, "OK");
    assert_v1_error(
        &post(&nsqd, "/pub?topic=big", over.clone()).await,
        413,
        "MSG_TOO_BIG",
    );
    // The size is checked before the topic.
    assert_v1_error(&post(&nsqd, "/pub", over.clone()).await, 413, "MSG_TOO_BIG");

    // Without a Content-Length the body is read up to one byte past the limit.
    let chunked = post_chunked(&nsqd, "/pub?topic=big", over.as_bytes()).await;
    assert_v1_error(&chunked, 413, "MSG_TOO_BIG");
    let chunked = post_chunked(&nsqd, "/pub?topic=big", "y".repeat(150).as_bytes()).await;
    assert_v1_error(&chunked, 413, "MSG_TOO_BIG");
    assert_v1_text(
        &post_chunked(&nsqd, "/pub?topic=big", exact.as_bytes()).await,
        "OK",
    );
    assert_v1_error(
        &post_chunked(&nsqd, "/pub?topic=big", b"").await,
        400,
        "MSG_EMPTY",
    );

    let topic = topic_stats(&nsqd, "big").await.unwrap();
    assert_eq!((topic.message_count, topic.message_bytes), (2, 200));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_defer_is_validated_against_max_req_timeout() {
    let nsqd = start_nsqd(Options {
        max_req_timeout: Duration::from_secs(10),
        ..test_options()
    })
    .await;
    assert_v1_empty(&post(&nsqd, "/topic/create?topic=test", "").await);
    assert_v1_empty(&post(&nsqd, "/channel/create?topic=test&channel=c", "").await);

    let deferred = post(&nsqd, "/pub?topic=test&defer=6000", "deferred").await;
    assert_like_capture(&deferred, "nsqd/pub_defer", Same::Body);
    assert_v1_text(
        &post(&nsqd, "/pub?topic=test&defer=10000", "at max").await,
        "OK",
    );
    assert_v1_text(&post(&nsqd, "/pub?topic=test&defer=0", "now").await, "OK");
    for bad in ["-1", "abc", "10001", "1.5", ""] {
        let reply = post(&nsqd, &format!("/pub?topic=test&defer={bad}"), "x").await;
        assert_v1_error(&reply, 400, "INVALID_DEFER");
    }

    let channel = channel_stats(&nsqd, "test", "c").await.unwrap();
    assert_eq!(
        (channel.deferred_count, channel.depth, channel.message_count),
        (2, 1, 3)
    );
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_pub_reaches_a_consumer_no_earlier_than_its_defer() {
    let nsqd = start_default_nsqd().await;
    let mut consumer = consumer(&nsqd, "later", "c", 5).await;
    let sent = Instant::now();
    assert_v1_text(
        &post(&nsqd, "/pub?topic=later&defer=300", "late").await,
        "OK",
    );
    assert_v1_text(&post(&nsqd, "/pub?topic=later", "early").await, "OK");
    let first = consumer.expect_message().await;
    assert_eq!(body_of(&first), "early");
    let second = consumer.expect_message().await;
    assert_eq!(body_of(&second), "late");
    assert!(
        sent.elapsed() >= Duration::from_millis(300),
        "delivered after {:?}",
        sent.elapsed()
    );
    assert_eq!(second.attempts, 1);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpub_text_publishes_each_non_empty_line_in_order() {
    let nsqd = start_small_nsqd().await;
    let mut consumer = consumer(&nsqd, "test", "c", 100).await;

    let reply = post(&nsqd, "/mpub?topic=test", "m1\nm2\n\n\nm3").await;
    assert_like_capture(&reply, "nsqd/mpub_newline", Same::Body);
    // Only `\n` ends a line; a `\r` stays in the message.
    assert_v1_text(&post(&nsqd, "/mpub?topic=test", "a\r\nb\n").await, "OK");
    assert_v1_text(
        &post(&nsqd, "/mpub?topic=test&binary=false", "c\nd").await,
        "OK",
    );
    assert_v1_text(&post(&nsqd, "/mpub?topic=test&binary=0", "e").await, "OK");
    // An empty body publishes nothing and is fine.
    assert_v1_text(&post(&nsqd, "/mpub?topic=test", "").await, "OK");
    assert_v1_text(&post(&nsqd, "/mpub?topic=test", "\n\n").await, "OK");
    consumer
        .expect_bodies(&["m1", "m2", "m3", "a\r", "b", "c", "d", "e"])
        .await;
    let sent = topic_stats(&nsqd, "test").await.unwrap().message_count;
    assert_eq!(sent, 8);

    // A bad line refuses the whole body.
    let long = format!("ok\n{}\nok", "x".repeat(101));
    assert_v1_error(
        &post(&nsqd, "/mpub?topic=test", long).await,
        413,
        "MSG_TOO_BIG",
    );
    let line_at_max = "x".repeat(100);
    assert_v1_text(
        &post(&nsqd, "/mpub?topic=test", line_at_max.clone()).await,
        "OK",
    );
    consumer.expect_bodies(&[&line_at_max]).await;

    let at_max = "ab\n".repeat(333) + "z";
    assert_eq!(at_max.len(), 1000);
    assert_v1_text(&post(&nsqd, "/mpub?topic=test", at_max.clone()).await, "OK");
    let over = at_max + "z";
    assert_v1_error(
        &post(&nsqd, "/mpub?topic=test", over.clone()).await,
        413,
        "BODY_TOO_BIG",
    );
    // The size is checked before the topic.
    assert_v1_error(
        &post(&nsqd, "/mpub", over.clone()).await,
        413,
        "BODY_TOO_BIG",
    );
    // Without a Content-Length, lines are checked as they are read: the body
    // limit shows when it is reached, after the lines before it.
    let chunked = post_chunked(&nsqd, "/mpub?topic=test", over.as_bytes()).await;
    assert_v1_error(&chunked, 413, "BODY_TOO_BIG");
    let early_long_line = format!("{}\n{}", "x".repeat(101), "y\n".repeat(600));
    let chunked = post_chunked(&nsqd, "/mpub?topic=test", early_long_line.as_bytes()).await;
    assert_v1_error(&chunked, 413, "MSG_TOO_BIG");
    let chunked = post_chunked(&nsqd, "/mpub?topic=test", b"p\nq").await;
    assert_v1_text(&chunked, "OK");

    assert_v1_error(&post(&nsqd, "/mpub", "x").await, 400, "MISSING_ARG_TOPIC");
    assert_v1_error(
        &post(&nsqd, "/mpub?topic=bad!name", "x").await,
        400,
        "INVALID_TOPIC",
    );
    let topic = topic_stats(&nsqd, "test").await.unwrap();
    assert_eq!(topic.message_count, 8 + 1 + 334 + 2);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mpub_binary_publishes_sized_messages_and_refuses_bad_framing() {
    let nsqd = start_small_nsqd().await;
    let mut consumer = consumer(&nsqd, "test", "c", 100).await;

    let body = binary_mpub(&[b"one", b"two\nlines", b"three"]);
    let reply = post(&nsqd, "/mpub?topic=test&binary=true", body).await;
    assert_like_capture(&reply, "nsqd/mpub_binary", Same::Body);
    let body = binary_mpub(&[b"four"]);
    assert_v1_text(
        &post(&nsqd, "/mpub?topic=test&binary=1", body.clone()).await,
        "OK",
    );
    // Any other value means binary too (deprecated upstream).
    assert_v1_text(
        &post(&nsqd, "/mpub?topic=test&binary=yes", body.clone()).await,
        "OK",
    );
    // Bytes after the last message are ignored.
    let mut trailing = binary_mpub(&[b"five"]);
    trailing.extend_from_slice(b"junk");
    assert_v1_text(
        &post(&nsqd, "/mpub?topic=test&binary=true", trailing).await,
        "OK",
    );
    consumer
        .expect_bodies(&["one", "two\nlines", "three", "four", "four", "five"])
        .await;

    let at_max = "x".repeat(100);
    let body = binary_mpub(&[at_max.as_bytes()]);
    assert_v1_text(
        &post(&nsqd, "/mpub?topic=test&binary=true", body).await,
        "OK",
    );
    consumer.expect_bodies(&[&at_max]).await;

    let bin = "/mpub?topic=test&binary=true";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "BAD_BODY"),
        (vec![0, 0], "BAD_BODY"),
        (0u32.to_be_bytes().to_vec(), "BAD_BODY"),
        ((-1i32).to_be_bytes().to_vec(), "BAD_BODY"),
        // More messages than (max_body_size - 4) / 5 could ever fit.
        (200u32.to_be_bytes().to_vec(), "BAD_BODY"),
        (binary_mpub(&[b""]), "BAD_MESSAGE"),
        (binary_mpub(&["x".repeat(101).as_bytes()]), "BAD_MESSAGE"),
        // The count promises two messages; there is one.
        (
            [&2u32.to_be_bytes()[..], &binary_mpub(&[b"only"])[4..]].concat(),
            "BAD_MESSAGE",
        ),
        // A size with too few bytes behind it.
        (
            [
                &2u32.to_be_bytes()[..],
                &binary_mpub(&[b"cut"])[4..],
                &[0, 0, 0, 9, b'a'],
            ]
            .concat(),
            "BAD_MESSAGE",
        ),
        (1u32.to_be_bytes().to_vec(), "BAD_MESSAGE"),
    ];
    for (body, code) in cases {
        let reply = post(&nsqd, bin, body.clone()).await;
        assert_v1_error(&reply, 413, code);
        if !body.is_empty() {
            let chunked = post_chunked(&nsqd, bin, &body).await;
            assert_v1_error(&chunked, 413, code);
        }
    }
    let big: Vec<&[u8]> = vec![b"0123456789"; 80];
    let reply = post(&nsqd, bin, binary_mpub(&big)).await;
    assert_v1_error(&reply, 413, "BODY_TOO_BIG");
    let reply = post_chunked(&nsqd, bin, &binary_mpub(&big)).await;
    assert_v1_error(&reply, 413, "BODY_TOO_BIG");

    let topic = topic_stats(&nsqd, "test").await.unwrap();
    assert_eq!(topic.message_count, 7);
    nsqd.shutdown().await;
}
