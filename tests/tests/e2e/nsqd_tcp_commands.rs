//! nsqd's TCP protocol V2 over real sockets: every publishing and consuming
//! command with each of its errors, which errors close the connection, and
//! hostile input that must not disturb other clients.

use bytes::{Bytes, BytesMut};
use nsq::protocol::{Command, MessageId};
use nsq_e2e::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_commands_and_their_errors() {
    let nsqd = start_default_nsqd().await;
    let mut conn = Conn::connect(&nsqd).await;
    conn.publish("p", b"one").await;
    conn.send(Command::Mpub {
        topic: "p".into(),
        bodies: vec![Bytes::from("two"), Bytes::from("three")],
    })
    .await;
    conn.expect_response("OK").await;
    conn.send(Command::Dpub {
        topic: "p".into(),
        delay: Duration::from_millis(10),
        body: Bytes::from("four"),
    })
    .await;
    conn.expect_response("OK").await;
    // Producers pipeline: many commands in one write, answered in order.
    let mut batch = BytesMut::new();
    for i in 0..100 {
        Command::Pub {
            topic: "p".into(),
            body: format!("m{i}").into(),
        }
        .encode(&mut batch);
    }
    conn.send_raw(&batch).await;
    for _ in 0..100 {
        conn.expect_response("OK").await;
    }
    let s = stats(&nsqd).await;
    let topic = &s.topics.unwrap()[0];
    assert_eq!(
        (topic.message_count, topic.depth),
        (104, 104),
        "with no channel yet, all wait in the topic"
    );
    let producers = s.producers.expect("the connection is a producer");
    assert_eq!(producers[0].pub_counts[0].count, 104);

    let too_long = format!(
        "E_BAD_TOPIC PUB topic name \"{}\" is not valid",
        "x".repeat(65)
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"PUB\n".to_vec(),
            "E_INVALID PUB insufficient number of parameters",
        ),
        (
            b"PUB t\n\x00\x00\x00\x00".to_vec(),
            "E_BAD_MESSAGE PUB invalid message body size 0",
        ),
        (
            b"PUB t\n\x00\x10\x00\x01".to_vec(),
            "E_BAD_MESSAGE PUB message too big 1048577 > 1048576",
        ),
        (
            b"MPUB t\n\x00\x50\x00\x01".to_vec(),
            "E_BAD_BODY MPUB body too big 5242881 > 5242880",
        ),
        (
            b"MPUB t\n\x00\x00\x00\x00".to_vec(),
            "E_BAD_BODY MPUB invalid body size 0",
        ),
        (
            b"MPUB t\n\x00\x00\x00\x04\x00\x00\x00\x00".to_vec(),
            "E_BAD_BODY MPUB invalid message count 0",
        ),
        (
            b"MPUB t\n\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00".to_vec(),
            "E_BAD_MESSAGE MPUB invalid message(0) body size 0",
        ),
        (
            b"MPUB b@d\n".to_vec(),
            "E_BAD_TOPIC E_BAD_TOPIC MPUB topic name \"b@d\" is not valid",
        ),
        (
            b"DPUB t\n".to_vec(),
            "E_INVALID DPUB insufficient number of parameters",
        ),
        (
            b"DPUB t x\n".to_vec(),
            "E_INVALID DPUB could not parse timeout x",
        ),
        (
            b"DPUB t 3600001\n".to_vec(),
            "E_INVALID DPUB timeout 3600001 out of range 0-3600000",
        ),
        (
            b"DPUB b@d 1\n".to_vec(),
            "E_BAD_TOPIC DPUB topic name \"b@d\" is not valid",
        ),
        (format!("PUB {}\n", "x".repeat(65)).into_bytes(), &too_long),
        (
            b"AUTH\n\x00\x00\x00\x01s".to_vec(),
            "E_AUTH_DISABLED AUTH disabled",
        ),
        (b"RDY 1\n".to_vec(), "E_INVALID cannot RDY in current state"),
        (
            b"FIN 0123456789abcdef\n".to_vec(),
            "E_INVALID cannot FIN in current state",
        ),
        (
            b"REQ 0123456789abcdef 0\n".to_vec(),
            "E_INVALID cannot REQ in current state",
        ),
        (
            b"TOUCH 0123456789abcdef\n".to_vec(),
            "E_INVALID cannot TOUCH in current state",
        ),
        (b"CLS\n".to_vec(), "E_INVALID cannot CLS in current state"),
        (
            b"SUB t\n".to_vec(),
            "E_INVALID SUB insufficient number of parameters",
        ),
        (
            b"SUB b@d c\n".to_vec(),
            "E_BAD_TOPIC SUB topic name \"b@d\" is not valid",
        ),
        (
            b"SUB t b@d\n".to_vec(),
            "E_BAD_CHANNEL SUB channel name \"b@d\" is not valid",
        ),
        (b"\n".to_vec(), "E_INVALID invalid command "),
        (b"pub t\n".to_vec(), "E_INVALID invalid command pub"),
    ];
    for (bytes, text) in cases {
        let mut conn = Conn::connect(&nsqd).await;
        conn.send_raw(&bytes).await;
        conn.expect_error(text).await;
        conn.expect_closed().await;
    }
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_commands_and_their_errors() {
    let nsqd = start_default_nsqd().await;
    let mut producer = Conn::connect(&nsqd).await;
    let mut c = consumer(&nsqd, "t", "c", 0).await;
    producer.publish("t", b"a").await;
    c.expect_silence(Duration::from_millis(100)).await; // RDY 0: nothing yet
    c.rdy(1).await;
    let msg = c.expect_message().await;
    assert_eq!((msg.attempts, &msg.body[..]), (1, &b"a"[..]));
    // Non-fatal errors keep the connection.
    c.fin(MessageId(*b"0000000000000000")).await;
    c.expect_error("E_FIN_FAILED FIN 0000000000000000 failed ID not in flight")
        .await;
    c.send_raw(b"REQ 0000000000000000 0\n").await;
    c.expect_error("E_REQ_FAILED REQ 0000000000000000 failed ID not in flight")
        .await;
    c.send_raw(b"TOUCH 0000000000000000\n").await;
    c.expect_error("E_TOUCH_FAILED TOUCH 0000000000000000 failed ID not in flight")
        .await;
    // Another consumer of the channel does not own the message.
    let mut other = consumer(&nsqd, "t", "c", 0).await;
    other.fin(msg.id).await;
    other
        .expect_error(&format!(
            "E_FIN_FAILED FIN {} failed client does not own message",
            msg.id
        ))
        .await;
    c.send(Command::Touch(msg.id)).await;
    c.fin(msg.id).await;
    c.send(Command::Nop).await;
    c.expect_silence(Duration::from_millis(100)).await;
    // Fatal ones close it.
    for (bytes, text) in [
        (
            &b"RDY 2501\n"[..],
            "E_INVALID RDY count 2501 out of range 0-2500",
        ),
        (b"RDY -1\n", "E_INVALID RDY could not parse count -1"),
        (b"FIN short\n", "E_INVALID invalid message ID"),
        (b"FIN\n", "E_INVALID FIN insufficient number of params"),
        (
            b"REQ 0123456789abcdef\n",
            "E_INVALID REQ insufficient number of params",
        ),
        (
            b"REQ 0123456789abcdef x\n",
            "E_INVALID REQ could not parse timeout x",
        ),
        (b"TOUCH\n", "E_INVALID TOUCH insufficient number of params"),
        (b"SUB t c\n", "E_INVALID cannot SUB in current state"),
    ] {
        let mut conn = consumer(&nsqd, "t", "c", 0).await;
        conn.send_raw(bytes).await;
        conn.expect_error(text).await;
        conn.expect_closed().await;
    }
    // CLS: CLOSE_WAIT, RDY is then ignored.
    c.send(Command::Cls).await;
    c.expect_response("CLOSE_WAIT").await;
    c.rdy(5).await;
    producer.publish("t", b"b").await;
    c.expect_silence(Duration::from_millis(150)).await;
    nsqd.shutdown().await;
}

/// Garbage, truncated frames, huge sizes and silence on some connections do not
/// disturb a well-behaved producer and consumer on others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_leaves_others_unaffected() {
    let nsqd = start_default_nsqd().await;
    let mut good_consumer = consumer(&nsqd, "h", "c", 100).await;
    let mut good_producer = Conn::connect(&nsqd).await;
    let mut idle = Vec::new();
    let garbage: Vec<&[u8]> = vec![
        b"\x00\x01\x02\x03\xff\xfe",
        b"  V2\xff\xff\xff\xff\xff\n",
        b"  V2PUB t\n\x7f\xff\xff\xff",
        b"  V2MPUB t\n\x00\x00\x10\x00\x7f\xff\xff\xff",
        b"  V2IDENTIFY\n\x00\x00\x00\x05{\"a\":",
        b"  V2PUB t\n\x00\x00\x00\x10abc",
    ];
    for bytes in garbage {
        let mut conn = Conn::connect_raw(&nsqd).await;
        conn.send_raw(bytes).await;
        idle.push(conn);
    }
    let mut long = Conn::connect(&nsqd).await;
    long.send_raw(&vec![b'A'; 20_000]).await;
    long.expect_error("E_INVALID command line longer than 16384 bytes")
        .await;
    long.expect_closed().await;
    for i in 0..50 {
        good_producer.publish("h", format!("g{i}").as_bytes()).await;
        let m = good_consumer.expect_message().await;
        assert_eq!(m.body, Bytes::from(format!("g{i}")));
        good_consumer.fin(m.id).await;
    }
    nsqd.shutdown().await;
}
