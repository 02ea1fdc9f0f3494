//! nsqd's `/stats`, end to end: the JSON and text layouts of upstream
//! v1.3.0's captures, the filters, and counts that follow what TCP clients did.

use nsq::protocol::Command;
use nsq_e2e::*;
use std::time::Duration;

/// The state upstream's `/stats` captures were taken in: topic `test` with a
/// consumer on `samplech` (messages in flight and one deferred), and topic
/// `test2` with an idle, paused channel `ch2`. Every publish is over HTTP, so
/// there are no producers. Returns the consumer, which must stay connected.
async fn upstream_sample_state(nsqd: &Nsqd) -> Conn {
    let mut conn = Conn::connect(nsqd).await;
    conn.identify_ok(r#"{"hostname":"vm","user_agent":"nsq_tail/1.3.0 go-nsq/1.1.0"}"#)
        .await;
    conn.subscribe("test", "samplech").await;
    conn.rdy(200).await;
    for i in 0..7 {
        assert_v1_text(&post(nsqd, "/pub?topic=test", format!("m{i}")).await, "OK");
    }
    assert_v1_text(
        &post(nsqd, "/pub?topic=test&defer=60000", "later").await,
        "OK",
    );
    let msgs = conn
        .expect_bodies(&["m0", "m1", "m2", "m3", "m4", "m5", "m6"])
        .await;
    conn.fin(msgs[0].id).await;
    conn.fin(msgs[1].id).await;
    assert_v1_empty(&post(nsqd, "/topic/create?topic=test2", "").await);
    assert_v1_empty(&post(nsqd, "/channel/create?topic=test2&channel=ch2", "").await);
    assert_v1_empty(&post(nsqd, "/channel/pause?topic=test2&channel=ch2", "").await);
    eventually("the FINs to land", || async {
        channel_stats(nsqd, "test", "samplech")
            .await
            .is_some_and(|c| c.in_flight_count == 5)
    })
    .await;
    conn
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_json_has_upstream_layout_with_and_without_filters() {
    let nsqd = start_default_nsqd().await;
    let _consumer = upstream_sample_state(&nsqd).await;
    for (path, name) in [
        ("/stats?format=json", "stats_json"),
        ("/stats?format=json&include_mem=true", "stats_json_mem"),
        (
            "/stats?format=json&include_clients=false",
            "stats_json_noclients",
        ),
        ("/stats?format=json&topic=test", "stats_json_topic"),
        (
            "/stats?format=json&topic=test&channel=samplech",
            "stats_json_topic_channel",
        ),
    ] {
        let reply = get(&nsqd, path).await;
        assert_like_capture(&reply, &format!("nsqd/{name}"), Same::JsonShape);
    }

    let stats = assert_v1_json(&get(&nsqd, "/stats?format=json").await);
    assert_eq!(stats["version"], "1.3.0");
    assert_eq!(stats["health"], "OK");
    let test = &stats["topics"][0];
    assert_eq!(test["topic_name"], "test");
    assert_eq!(test["message_count"], 8);
    assert_eq!(test["message_bytes"], 7 * 2 + 5);
    let samplech = &test["channels"][0];
    assert_eq!(samplech["in_flight_count"], 5);
    assert_eq!(samplech["deferred_count"], 1);
    assert_eq!(samplech["message_count"], 8);
    assert_eq!(samplech["client_count"], 1);
    assert_eq!(
        samplech["e2e_processing_latency"]["percentiles"],
        serde_json::Value::Null
    );
    let client = &samplech["clients"][0];
    assert_eq!(client["hostname"], "vm");
    assert_eq!(client["user_agent"], "nsq_tail/1.3.0 go-nsq/1.1.0");
    assert_eq!(client["state"], 3);
    assert_eq!(
        (
            &client["ready_count"],
            &client["message_count"],
            &client["finish_count"]
        ),
        (&200.into(), &7.into(), &2.into())
    );
    let ch2 = &stats["topics"][1]["channels"][0];
    assert_eq!(
        (&ch2["channel_name"], &ch2["paused"]),
        (&"ch2".into(), &true.into())
    );
    assert_eq!(ch2["clients"], serde_json::json!([]));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_filters_and_include_flags() {
    let nsqd = start_default_nsqd().await;
    let _consumer = upstream_sample_state(&nsqd).await;
    let mut producer = Conn::connect(&nsqd).await;
    producer.publish("test2", b"tcp").await;

    let topics = |v: &serde_json::Value| -> Vec<String> {
        v["topics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["topic_name"].as_str().unwrap().to_string())
            .collect()
    };
    let all = assert_v1_json(&get(&nsqd, "/stats?format=json").await);
    assert_eq!(topics(&all), ["test", "test2"]);
    assert!(all["memory"].is_object());
    assert_eq!(all["producers"].as_array().unwrap().len(), 1);

    let one = assert_v1_json(&get(&nsqd, "/stats?format=json&topic=test2").await);
    assert_eq!(topics(&one), ["test2"]);
    let channel =
        assert_v1_json(&get(&nsqd, "/stats?format=json&topic=test&channel=samplech").await);
    assert_eq!(
        channel["topics"][0]["channels"].as_array().unwrap().len(),
        1
    );

    // A topic that does not exist: no topics and no producers at all.
    let reply = get(&nsqd, "/stats?format=json&topic=nosuch").await;
    assert!(reply.body.contains(r#""topics":null"#), "{}", reply.body);
    assert_eq!(reply.json()["producers"], serde_json::Value::Null);
    // A channel missing from the topic skips the topic.
    let reply = get(&nsqd, "/stats?format=json&topic=test&channel=nosuch").await;
    assert!(reply.body.contains(r#""topics":[]"#), "{}", reply.body);
    // A channel filter alone applies to every topic.
    let ch2 = assert_v1_json(&get(&nsqd, "/stats?format=json&channel=ch2").await);
    assert_eq!(topics(&ch2), ["test2"]);

    let reply = get(&nsqd, "/stats?format=json&include_clients=false").await;
    let no_clients = assert_v1_json(&reply);
    assert_eq!(no_clients["producers"], serde_json::Value::Null);
    let samplech = &no_clients["topics"][0]["channels"][0];
    assert_eq!(samplech["clients"], serde_json::Value::Null);
    assert_eq!(samplech["client_count"], 1);
    assert!(reply.body.contains(r#""producers":null"#));
    for flag in ["0", "false"] {
        let reply = get(&nsqd, &format!("/stats?format=json&include_mem={flag}")).await;
        assert!(!reply.body.contains(r#""memory""#), "{}", reply.body);
    }
    // Only true/1/false/0 count; anything else is the default, true.
    for flag in ["1", "true", "nonsense", ""] {
        let path = format!("/stats?format=json&include_mem={flag}&include_clients={flag}");
        let stats = assert_v1_json(&get(&nsqd, &path).await);
        assert!(stats["memory"].is_object(), "{flag}");
        assert!(stats["producers"].is_array(), "{flag}");
    }
    // Only format=json gives JSON.
    let text = get(&nsqd, "/stats?format=JSON").await;
    assert_v1_text(&text, &text.body);
    assert!(text.body.starts_with("nsqd v1.3.0"));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_counts_follow_what_clients_did_over_tcp() {
    let nsqd = start_default_nsqd().await;
    assert_v1_empty(&post(&nsqd, "/topic/create?topic=counts", "").await);
    // An idle channel keeps every message as depth.
    assert_v1_empty(&post(&nsqd, "/channel/create?topic=counts&channel=idle", "").await);
    let mut consumer = consumer(&nsqd, "counts", "work", 10).await;
    let mut producer = Conn::connect(&nsqd).await;
    for i in 0..5 {
        producer.publish("counts", format!("m{i}").as_bytes()).await;
    }
    let msgs = consumer
        .expect_bodies(&["m0", "m1", "m2", "m3", "m4"])
        .await;
    consumer.fin(msgs[0].id).await;
    consumer
        .send(Command::Req {
            id: msgs[1].id,
            delay: Duration::ZERO,
        })
        .await;
    let again = consumer.expect_message().await;
    assert_eq!((again.id, again.attempts), (msgs[1].id, 2));
    consumer
        .send(Command::Req {
            id: msgs[2].id,
            delay: Duration::from_secs(60),
        })
        .await;
    assert_v1_empty(&post(&nsqd, "/channel/pause?topic=counts&channel=idle", "").await);
    eventually("the REQ with delay to land", || async {
        channel_stats(&nsqd, "counts", "work")
            .await
            .is_some_and(|c| c.deferred_count == 1)
    })
    .await;

    let topic = topic_stats(&nsqd, "counts").await.unwrap();
    assert_eq!(
        (
            topic.depth,
            topic.message_count,
            topic.message_bytes,
            topic.paused
        ),
        (0, 5, 10, false)
    );
    let idle = &topic.channels[0];
    assert_eq!(idle.channel_name, "idle");
    assert_eq!(
        (
            idle.depth,
            idle.in_flight_count,
            idle.message_count,
            idle.client_count,
            idle.paused
        ),
        (5, 0, 5, 0, true)
    );
    assert_eq!(idle.clients, Some(vec![]));
    let work = &topic.channels[1];
    assert_eq!(work.channel_name, "work");
    assert_eq!(
        (
            work.depth,
            work.in_flight_count,
            work.deferred_count,
            work.message_count,
            work.requeue_count,
            work.timeout_count,
            work.client_count,
            work.paused
        ),
        (0, 3, 1, 5, 2, 0, 1, false)
    );
    let client = &work.clients.as_ref().unwrap()[0];
    assert_eq!(
        client.remote_address,
        consumer.stream.local_addr().unwrap().to_string()
    );
    assert_eq!(
        (
            client.state,
            client.ready_count,
            client.in_flight_count,
            client.message_count,
            client.finish_count,
            client.requeue_count
        ),
        (3, 10, 3, 6, 1, 2)
    );
    assert!(client.pub_counts.is_empty());

    // Only the connection that published is a producer.
    let producers = stats(&nsqd).await.producers.unwrap();
    assert_eq!(producers.len(), 1);
    let p = &producers[0];
    assert_eq!(
        p.remote_address,
        producer.stream.local_addr().unwrap().to_string()
    );
    assert_eq!(p.version, "V2");
    assert_eq!(
        (p.pub_counts[0].topic.as_str(), p.pub_counts[0].count),
        ("counts", 5)
    );
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_timeouts() {
    let nsqd = start_nsqd(Options {
        msg_timeout: Duration::from_millis(150),
        ..test_options()
    })
    .await;
    let mut consumer = consumer(&nsqd, "slow", "c", 1).await;
    assert_v1_text(&post(&nsqd, "/pub?topic=slow", "m").await, "OK");
    let first = consumer.expect_message().await;
    let again = consumer.expect_message().await;
    assert_eq!((again.id, again.attempts), (first.id, 2));
    consumer.fin(again.id).await;
    eventually("the FIN to land", || async {
        channel_stats(&nsqd, "slow", "c")
            .await
            .is_some_and(|c| c.in_flight_count == 0)
    })
    .await;
    let channel = channel_stats(&nsqd, "slow", "c").await.unwrap();
    assert_eq!(
        (
            channel.timeout_count,
            channel.requeue_count,
            channel.message_count
        ),
        (1, 0, 1)
    );
    let client = &channel.clients.unwrap()[0];
    assert_eq!((client.message_count, client.finish_count), (2, 1));
    nsqd.shutdown().await;
}

/// A `/stats` text line with its numbers blanked: a number padded with spaces
/// becomes `#` and its padded width, any other number `#`. Lines of two runs
/// then compare equal exactly when their layout is the same.
fn text_shape(line: &str) -> String {
    let bytes = line.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            out.push(bytes[i] as char);
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let digits_end = i;
        while i < bytes.len() && bytes[i] == b' ' {
            i += 1;
        }
        if i > digits_end && i < bytes.len() {
            out.push_str(&format!("#{}", i - start));
        } else {
            out.push('#');
            i = digits_end;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_text_has_upstream_layout() {
    let nsqd = start_default_nsqd().await;
    let _consumer = upstream_sample_state(&nsqd).await;
    let reply = get(&nsqd, "/stats").await;
    assert_like_capture(&reply, "nsqd/stats_text", Same::Nothing);
    assert_v1_text(&reply, &reply.body);

    let upstream = capture_body("nsqd/stats_text");
    let ours: Vec<&str> = reply.body.split('\n').collect();
    let theirs: Vec<&str> = upstream.split('\n').collect();
    assert_eq!(ours.len(), theirs.len(), "{}", reply.body);
    // Line 1 names the build: `nsqd v1.3.0 (built w/go1.19.8)` upstream.
    assert!(ours[0].starts_with("nsqd v1.3.0 (") && ours[0].ends_with(')'));
    for (line, (a, b)) in ours.iter().zip(&theirs).enumerate().skip(1) {
        if b.starts_with("uptime ") {
            assert!(a.starts_with("uptime ") && a.ends_with('s'), "{a}");
            continue;
        }
        assert_eq!(text_shape(a), text_shape(b), "line {}", line + 1);
    }
    assert!(ours.contains(&"Producers: None"));

    // A paused topic, a producer, and no memory block.
    assert_v1_empty(&post(&nsqd, "/topic/pause?topic=test2", "").await);
    let mut producer = Conn::connect(&nsqd).await;
    producer.publish("test2", b"x").await;
    let port = producer.stream.local_addr().unwrap().port();
    let text = get(&nsqd, "/stats?include_mem=false").await.body;
    assert!(!text.contains("Memory:"), "{text}");
    assert!(
        text.contains(
            "\n*P [test2          ] depth: 1     be-depth: 0     msgs: 1        e2e%: \n"
        ),
        "{text}"
    );
    let producer_line = format!(
        "\nProducers:\n   [V2 127.0.0.1:{port:<11}] msgs: 1        topics: test2=1 connected: "
    );
    assert!(text.contains(&producer_line), "{text}");

    // No topics at all.
    let empty = start_default_nsqd().await;
    let text = get(&empty, "/stats?include_mem=false").await.body;
    assert!(
        text.ends_with("\nHealth: OK\n\nTopics: None\n\nProducers: None\n"),
        "{text}"
    );
    empty.shutdown().await;
    nsqd.shutdown().await;
}
