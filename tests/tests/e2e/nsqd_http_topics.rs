//! nsqd's topic and channel endpoints, end to end: create, empty, pause,
//! unpause and delete as upstream v1.3.0 answers them (compared with its
//! captures), and their effect on what TCP consumers see.

use nsq_e2e::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_endpoints_succeed_and_fail_as_upstream() {
    let nsqd = start_default_nsqd().await;
    assert_like_capture(
        &post(&nsqd, "/topic/create?topic=test2", "").await,
        "nsqd/topic_create",
        Same::Body,
    );
    assert!(topic_stats(&nsqd, "test2").await.is_some());
    // Create is idempotent.
    assert_v1_empty(&post(&nsqd, "/topic/create?topic=test2", "").await);
    assert_v1_error(
        &post(&nsqd, "/topic/create", "").await,
        400,
        "MISSING_ARG_TOPIC",
    );
    assert_v1_error(
        &post(&nsqd, "/topic/create?topic=bad!name", "").await,
        400,
        "INVALID_TOPIC",
    );
    assert_v1_error(
        &post(&nsqd, "/topic/create?topic=", "").await,
        400,
        "INVALID_TOPIC",
    );

    assert_like_capture(
        &post(&nsqd, "/topic/empty?topic=test2", "").await,
        "nsqd/topic_empty",
        Same::Body,
    );
    assert_v1_error(
        &post(&nsqd, "/topic/empty", "").await,
        400,
        "MISSING_ARG_TOPIC",
    );
    assert_v1_error(
        &post(&nsqd, "/topic/empty?topic=bad!name", "").await,
        400,
        "INVALID_TOPIC",
    );
    assert_v1_error(
        &post(&nsqd, "/topic/empty?topic=nosuch", "").await,
        404,
        "TOPIC_NOT_FOUND",
    );

    assert_like_capture(
        &post(&nsqd, "/topic/pause?topic=test2", "").await,
        "nsqd/topic_pause",
        Same::Body,
    );
    assert!(topic_stats(&nsqd, "test2").await.unwrap().paused);
    assert_like_capture(
        &post(&nsqd, "/topic/unpause?topic=test2", "").await,
        "nsqd/topic_unpause",
        Same::Body,
    );
    assert!(!topic_stats(&nsqd, "test2").await.unwrap().paused);
    for action in ["pause", "unpause"] {
        let reply = post(&nsqd, &format!("/topic/{action}"), "").await;
        assert_v1_error(&reply, 400, "MISSING_ARG_TOPIC");
        // Names are not checked, only looked up.
        let reply = post(&nsqd, &format!("/topic/{action}?topic=bad!name"), "").await;
        assert_v1_error(&reply, 404, "TOPIC_NOT_FOUND");
        let reply = post(&nsqd, &format!("/topic/{action}?topic=nosuch"), "").await;
        assert_v1_error(&reply, 404, "TOPIC_NOT_FOUND");
    }

    let reply = post(&nsqd, "/topic/delete?topic=doesnotexist", "").await;
    assert_like_capture(&reply, "nsqd/topic_delete_missing", Same::Body);
    assert_v1_error(
        &post(&nsqd, "/topic/delete", "").await,
        400,
        "MISSING_ARG_TOPIC",
    );
    assert_v1_error(
        &post(&nsqd, "/topic/delete?topic=bad!name", "").await,
        404,
        "TOPIC_NOT_FOUND",
    );
    assert_v1_empty(&post(&nsqd, "/topic/delete?topic=test2", "").await);
    assert!(topic_stats(&nsqd, "test2").await.is_none());
    assert_v1_error(
        &post(&nsqd, "/topic/delete?topic=test2", "").await,
        404,
        "TOPIC_NOT_FOUND",
    );
    // None of the refused requests created a topic.
    assert_eq!(stats(&nsqd).await.topics, Some(vec![]));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_endpoints_succeed_and_fail_as_upstream() {
    let nsqd = start_default_nsqd().await;
    assert_v1_empty(&post(&nsqd, "/topic/create?topic=test2", "").await);
    let reply = post(&nsqd, "/channel/create?topic=test2&channel=ch2", "").await;
    assert_like_capture(&reply, "nsqd/channel_create", Same::Body);
    assert!(channel_stats(&nsqd, "test2", "ch2").await.is_some());
    let reply = post(&nsqd, "/channel/create?topic=test2", "").await;
    assert_like_capture(&reply, "nsqd/channel_create_missing", Same::Body);
    // Channel create does not create the topic.
    let reply = post(&nsqd, "/channel/create?topic=nosuch&channel=c", "").await;
    assert_v1_error(&reply, 404, "TOPIC_NOT_FOUND");
    assert!(topic_stats(&nsqd, "nosuch").await.is_none());

    for action in ["create", "delete", "empty", "pause", "unpause"] {
        let at = |query: &str| format!("/channel/{action}{query}");
        let cases = [
            ("", 400, "MISSING_ARG_TOPIC"),
            ("?channel=ch2", 400, "MISSING_ARG_TOPIC"),
            ("?topic=bad!name&channel=ch2", 400, "INVALID_ARG_TOPIC"),
            ("?topic=&channel=ch2", 400, "INVALID_ARG_TOPIC"),
            ("?topic=test2", 400, "MISSING_ARG_CHANNEL"),
            // The arguments are checked before the topic is looked up.
            ("?topic=nosuch", 400, "MISSING_ARG_CHANNEL"),
            ("?topic=test2&channel=bad!chan", 400, "INVALID_ARG_CHANNEL"),
            ("?topic=nosuch&channel=bad!chan", 400, "INVALID_ARG_CHANNEL"),
            ("?topic=nosuch&channel=ch2", 404, "TOPIC_NOT_FOUND"),
        ];
        for (query, status, message) in cases {
            assert_v1_error(&post(&nsqd, &at(query), "").await, status, message);
        }
        if action != "create" {
            let reply = post(&nsqd, &at("?topic=test2&channel=nosuch"), "").await;
            assert_v1_error(&reply, 404, "CHANNEL_NOT_FOUND");
        }
    }

    let reply = post(&nsqd, "/channel/empty?topic=test2&channel=ch2", "").await;
    assert_like_capture(&reply, "nsqd/channel_empty", Same::Body);
    let reply = post(&nsqd, "/channel/pause?topic=test2&channel=ch2", "").await;
    assert_like_capture(&reply, "nsqd/channel_pause", Same::Body);
    assert!(channel_stats(&nsqd, "test2", "ch2").await.unwrap().paused);
    let reply = post(&nsqd, "/channel/unpause?topic=test2&channel=ch2", "").await;
    assert_v1_empty(&reply);
    assert!(!channel_stats(&nsqd, "test2", "ch2").await.unwrap().paused);
    assert_v1_empty(&post(&nsqd, "/channel/delete?topic=test2&channel=ch2", "").await);
    assert!(channel_stats(&nsqd, "test2", "ch2").await.is_none());
    let reply = post(&nsqd, "/channel/delete?topic=test2&channel=ch2", "").await;
    assert_v1_error(&reply, 404, "CHANNEL_NOT_FOUND");
    // The topic outlives its last (non-ephemeral) channel.
    assert!(topic_stats(&nsqd, "test2").await.is_some());
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_pause_stops_delivery_until_unpause() {
    let nsqd = start_default_nsqd().await;
    let mut consumer = consumer(&nsqd, "p", "c", 10).await;
    assert_v1_empty(&post(&nsqd, "/channel/pause?topic=p&channel=c", "").await);
    assert_v1_text(&post(&nsqd, "/pub?topic=p", "held").await, "OK");
    assert_v1_text(&post(&nsqd, "/mpub?topic=p", "held2\nheld3").await, "OK");
    consumer.expect_silence(Duration::from_millis(300)).await;
    let channel = channel_stats(&nsqd, "p", "c").await.unwrap();
    assert_eq!(
        (channel.depth, channel.in_flight_count, channel.paused),
        (3, 0, true)
    );

    assert_v1_empty(&post(&nsqd, "/channel/unpause?topic=p&channel=c", "").await);
    consumer.expect_bodies(&["held", "held2", "held3"]).await;
    assert_v1_text(&post(&nsqd, "/pub?topic=p", "after").await, "OK");
    consumer.expect_bodies(&["after"]).await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_pause_holds_messages_in_the_topic_until_unpause() {
    let nsqd = start_default_nsqd().await;
    let mut consumer = consumer(&nsqd, "tp", "c", 10).await;
    assert_v1_empty(&post(&nsqd, "/topic/pause?topic=tp", "").await);
    for body in ["a", "b", "c"] {
        assert_v1_text(&post(&nsqd, "/pub?topic=tp", body).await, "OK");
    }
    consumer.expect_silence(Duration::from_millis(300)).await;
    let topic = topic_stats(&nsqd, "tp").await.unwrap();
    assert_eq!(
        (topic.depth, topic.paused, topic.message_count),
        (3, true, 3)
    );
    assert_eq!(
        (topic.channels[0].depth, topic.channels[0].message_count),
        (0, 0)
    );

    assert_v1_empty(&post(&nsqd, "/topic/unpause?topic=tp", "").await);
    consumer.expect_bodies(&["a", "b", "c"]).await;
    let topic = topic_stats(&nsqd, "tp").await.unwrap();
    assert_eq!((topic.depth, topic.paused), (0, false));
    assert_eq!(topic.channels[0].message_count, 3);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_drops_queued_messages() {
    let nsqd = start_default_nsqd().await;
    // Without channels, messages wait in the topic.
    for body in ["1", "2", "3"] {
        assert_v1_text(&post(&nsqd, "/pub?topic=e", body).await, "OK");
    }
    assert_eq!(topic_stats(&nsqd, "e").await.unwrap().depth, 3);
    assert_v1_empty(&post(&nsqd, "/topic/empty?topic=e", "").await);
    assert_eq!(topic_stats(&nsqd, "e").await.unwrap().depth, 0);

    // A channel's queue, and what its consumer holds in flight.
    let mut consumer = consumer(&nsqd, "e", "c", 1).await;
    for body in ["4", "5", "6"] {
        assert_v1_text(&post(&nsqd, "/pub?topic=e", body).await, "OK");
    }
    consumer.expect_bodies(&["4"]).await;
    let channel = channel_stats(&nsqd, "e", "c").await.unwrap();
    assert_eq!((channel.depth, channel.in_flight_count), (2, 1));
    assert_v1_empty(&post(&nsqd, "/channel/empty?topic=e&channel=c", "").await);
    let channel = channel_stats(&nsqd, "e", "c").await.unwrap();
    assert_eq!((channel.depth, channel.in_flight_count), (0, 0));
    // Emptying does not disturb later deliveries.
    assert_v1_text(&post(&nsqd, "/pub?topic=e", "7").await, "OK");
    consumer.expect_bodies(&["7"]).await;
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_channel_or_topic_disconnects_its_consumers() {
    let nsqd = start_default_nsqd().await;
    let mut doomed = consumer(&nsqd, "d", "gone", 1).await;
    let mut kept = consumer(&nsqd, "d", "kept", 1).await;
    assert_v1_empty(&post(&nsqd, "/channel/delete?topic=d&channel=gone", "").await);
    doomed.expect_closed().await;
    assert!(channel_stats(&nsqd, "d", "gone").await.is_none());
    assert_v1_text(&post(&nsqd, "/pub?topic=d", "still here").await, "OK");
    kept.expect_bodies(&["still here"]).await;

    assert_v1_empty(&post(&nsqd, "/topic/delete?topic=d", "").await);
    kept.expect_closed().await;
    assert!(topic_stats(&nsqd, "d").await.is_none());
    nsqd.shutdown().await;
}
