//! The nsq crate's typed HTTP clients against live daemons.

use nsq::{Error, LookupdHttp, NsqdHttp, TopicAction};
use nsq_e2e::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nsqd_http_client_publishes_and_administers() {
    let nsqd = start_default_nsqd().await;
    let api = NsqdHttp::new(&nsqd.http_addr().unwrap().to_string());
    api.ping().await.unwrap();
    assert_eq!(
        api.info().await.unwrap().tcp_port as u16,
        nsqd.tcp_addr().port()
    );

    api.topic_action(TopicAction::Create, "h").await.unwrap();
    api.channel_action(TopicAction::Create, "h", "c")
        .await
        .unwrap();
    api.publish("h", "one").await.unwrap();
    api.multi_publish("h", ["two\nlines", "three"])
        .await
        .unwrap();
    api.deferred_publish("h", Duration::from_secs(60), "later")
        .await
        .unwrap();
    let stats = api.stats(Some("h"), Some("c"), false).await.unwrap();
    let channel = &stats.topics.unwrap()[0].channels[0];
    assert_eq!((channel.depth, channel.deferred_count), (3, 1));
    // Binary MPUB keeps a body's newline.
    let mut consumer = consumer(&nsqd, "h", "c", 10).await;
    let bodies: Vec<_> = [
        consumer.expect_message().await,
        consumer.expect_message().await,
    ]
    .iter()
    .map(|m| m.body.clone())
    .collect();
    assert!(bodies.contains(&bytes::Bytes::from("two\nlines")));

    api.channel_action(TopicAction::Pause, "h", "c")
        .await
        .unwrap();
    assert!(
        api.stats(Some("h"), None, false)
            .await
            .unwrap()
            .topics
            .unwrap()[0]
            .channels[0]
            .paused
    );
    // Errors carry the status and upstream's message.
    match api.channel_action(TopicAction::Empty, "h", "nope").await {
        Err(Error::Http {
            status: Some(404),
            message,
            ..
        }) => assert_eq!(message, "CHANNEL_NOT_FOUND"),
        other => panic!("{other:?}"),
    }
    match api.publish("bad!name", "x").await {
        Err(Error::Http {
            status: Some(400),
            message,
            ..
        }) => assert_eq!(message, "INVALID_TOPIC"),
        other => panic!("{other:?}"),
    }
    api.topic_action(TopicAction::Delete, "h").await.unwrap();
    assert!(api
        .stats(Some("h"), None, false)
        .await
        .unwrap()
        .topics
        .is_none());
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookupd_http_client_reads_and_administers() {
    let lookupd = start_lookupd().await;
    let nsqd = start_nsqd(options_with_lookupds(&[&lookupd])).await;
    let api = LookupdHttp::new(&lookupd.http_addr().to_string());
    api.ping().await.unwrap();
    let _consumer = consumer(&nsqd, "l", "c", 0).await;
    // nsqd registers the topic, then its channel: wait for both.
    eventually("registered", || async {
        api.lookup("l")
            .await
            .is_ok_and(|lookup| !lookup.channels.is_empty())
    })
    .await;
    let lookup = api.lookup("l").await.unwrap();
    assert_eq!(lookup.channels, vec!["c".to_string()]);
    assert_eq!(lookup.producers[0].tcp_port, nsqd.tcp_addr().port());
    assert_eq!(api.topics().await.unwrap(), vec!["l".to_string()]);
    assert_eq!(api.channels("l").await.unwrap(), vec!["c".to_string()]);
    assert_eq!(api.nodes().await.unwrap().producers.len(), 1);

    api.create_topic("made").await.unwrap();
    api.create_channel("made", "ch").await.unwrap();
    assert_eq!(api.channels("made").await.unwrap(), vec!["ch".to_string()]);
    api.delete_channel("made", "ch").await.unwrap();
    api.delete_topic("made").await.unwrap();
    let node = format!("127.0.0.1:{}", nsqd.http_addr().unwrap().port());
    api.tombstone("l", &node).await.unwrap();
    assert!(
        api.lookup("l").await.unwrap().producers.is_empty(),
        "tombstoned for the topic"
    );
    match api.lookup("never").await {
        Err(Error::Http {
            status: Some(404),
            message,
            ..
        }) => assert_eq!(message, "TOPIC_NOT_FOUND"),
        other => panic!("{other:?}"),
    }
    nsqd.shutdown().await;
    lookupd.shutdown().await;
}
