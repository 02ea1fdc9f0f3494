//! nsqd's HTTP routing and the node's own endpoints, end to end: `/ping`,
//! `/info` and `/config` as upstream v1.3.0 answers them (compared with its
//! captures), wrong methods, unknown paths, and httprouter's redirects.

use nsq_e2e::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_answers_plain_ok_without_the_nsq_header() {
    let nsqd = start_default_nsqd().await;
    let reply = get(&nsqd, "/ping").await;
    assert_like_capture(&reply, "nsqd/ping", Same::Body);
    assert_eq!(reply.header(NSQ_HEADER), None);
    assert_eq!(reply.header("content-type"), Some(TEXT));
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_lists_upstream_fields_in_order_with_real_ports() {
    let nsqd = start_default_nsqd().await;
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let reply = get(&nsqd, "/info").await;
    assert_like_capture(&reply, "nsqd/info", Same::JsonShape);
    let info = assert_v1_json(&reply);
    assert_eq!(info["version"], "1.3.0");
    assert_eq!(info["broadcast_address"], "127.0.0.1");
    assert!(!info["hostname"].as_str().unwrap().is_empty());
    assert_eq!(info["tcp_port"], nsqd.tcp_addr().port());
    assert_eq!(info["http_port"], nsqd.http_addr().unwrap().port());
    let start = info["start_time"].as_i64().unwrap();
    assert!((before - 5..=before + 1).contains(&start), "{start}");
    // Durations are Go Durations: integer nanoseconds.
    assert_eq!(info["max_heartbeat_interval"], 60_000_000_000i64);
    assert_eq!(info["max_output_buffer_timeout"], 30_000_000_000i64);
    assert_eq!(info["max_output_buffer_size"], 65536);
    assert_eq!(info["max_deflate_level"], 6);
    // /info never reads the query, so a bad escape there is harmless.
    assert_eq!(get(&nsqd, "/info?x=%zz").await.status, 200);
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_get_405_and_options_lists_the_allowed_ones() {
    let nsqd = start_default_nsqd().await;
    let reply = get(&nsqd, "/pub?topic=test").await;
    assert_like_capture(&reply, "nsqd/pub_get_method", Same::Body);
    assert_v1_error(&reply, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(reply.header("allow"), Some("OPTIONS, POST"));

    let reply = send(&nsqd, reqwest::Method::OPTIONS, "/pub", "").await;
    assert_eq!((reply.status, reply.body.as_str()), (200, ""));
    assert_eq!(reply.header("allow"), Some("OPTIONS, POST"));
    assert_eq!(reply.header(NSQ_HEADER), None);
    assert_eq!(reply.header("content-type"), None);

    let reply = send(&nsqd, reqwest::Method::OPTIONS, "/config/log_level", "").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("allow"), Some("GET, OPTIONS, PUT"));
    let reply = send(&nsqd, reqwest::Method::DELETE, "/config/log_level", "").await;
    assert_v1_error(&reply, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(reply.header("allow"), Some("GET, OPTIONS, PUT"));
    // HEAD is not GET to httprouter.
    let reply = send(&nsqd, reqwest::Method::HEAD, "/ping", "").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, OPTIONS"));
    let reply = post(&nsqd, "/stats", "").await;
    assert_v1_error(&reply, 405, "METHOD_NOT_ALLOWED");
    assert_eq!(reply.header("allow"), Some("GET, OPTIONS"));

    let reply = send(&nsqd, reqwest::Method::OPTIONS, "/nope", "").await;
    assert_v1_error(&reply, 404, "NOT_FOUND");
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_404_and_malformed_queries_invalid_request() {
    let nsqd = start_default_nsqd().await;
    let reply = get(&nsqd, "/nope").await;
    assert_like_capture(&reply, "nsqd/not_found", Same::Body);
    assert_v1_error(&reply, 404, "NOT_FOUND");
    // The pre-1.0 endpoints are gone.
    for path in [
        "/put",
        "/mput",
        "/create_topic",
        "/empty_channel",
        "/config",
        "/config/",
    ] {
        assert_v1_error(&post(&nsqd, path, "x").await, 404, "NOT_FOUND");
    }
    assert_v1_error(&get(&nsqd, "/config/a/b").await, 404, "NOT_FOUND");

    for path in [
        "/stats?topic=%zz",
        "/stats?format=json&x=%",
        "/stats?a=1;b=2",
    ] {
        assert_v1_error(&get(&nsqd, path).await, 400, "INVALID_REQUEST");
    }
    for path in [
        "/topic/create?topic=%zz",
        "/topic/delete?topic=%zz",
        "/topic/empty?topic=%zz",
        "/topic/pause?topic=%zz",
        "/topic/unpause?topic=%zz",
        "/channel/create?topic=%zz",
        "/channel/delete?topic=%zz",
        "/channel/empty?topic=%zz",
        "/channel/pause?topic=%zz",
        "/channel/unpause?topic=%zz",
        "/mpub?topic=%zz",
        "/pub?topic=x&defer=%g1",
    ] {
        assert_v1_error(&post(&nsqd, path, "x").await, 400, "INVALID_REQUEST");
    }
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_off_by_a_slash_or_case_are_redirected_as_httprouter_does() {
    let nsqd = start_default_nsqd().await;
    let reply = get(&nsqd, "/ping/").await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("/ping"));
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(reply.body, "<a href=\"/ping\">Moved Permanently</a>.\n\n");
    assert_eq!(reply.header(NSQ_HEADER), None);

    let reply = get(&nsqd, "/STATS?format=json").await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("/stats?format=json"));
    let reply = get(&nsqd, "/config/log_level/").await;
    assert_eq!(reply.status, 301);
    assert_eq!(reply.header("location"), Some("/config/log_level"));

    // Other methods are sent back with the same method.
    let reply = post(&nsqd, "/pub/?topic=t", "x").await;
    assert_eq!((reply.status, reply.body.as_str()), (307, ""));
    assert_eq!(reply.header("location"), Some("/pub?topic=t"));
    let reply = post(&nsqd, "/Topic/Create?topic=t", "").await;
    assert_eq!(reply.status, 307);
    assert_eq!(reply.header("location"), Some("/topic/create?topic=t"));

    // Only routes of the request's own method are candidates.
    assert_v1_error(&get(&nsqd, "/pub/").await, 404, "NOT_FOUND");
    // The path is decoded before routing, as Go's URL.Path.
    assert_eq!(get(&nsqd, "/p%69ng").await.body, "OK");
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_get_answers_upstream_types() {
    let nsqd = start_default_nsqd().await;
    let reply = get(&nsqd, "/config/log_level").await;
    assert_like_capture(&reply, "nsqd/config_log_level", Same::Body);
    assert_eq!(reply.body, "2");
    let reply = get(&nsqd, "/config/nsqlookupd_tcp_addresses").await;
    assert_like_capture(&reply, "nsqd/config_lookupd", Same::Nothing);
    assert_eq!(reply.body, "[]");

    // Durations are integer nanoseconds.
    assert_eq!(
        assert_v1_json(&get(&nsqd, "/config/msg_timeout").await),
        60_000_000_000i64
    );
    assert_eq!(
        assert_v1_json(&get(&nsqd, "/config/max_req_timeout").await),
        3_600_000_000_000i64
    );
    assert_eq!(
        assert_v1_json(&get(&nsqd, "/config/mem_queue_size").await),
        10_000
    );
    assert_eq!(assert_v1_json(&get(&nsqd, "/config/snappy").await), true);
    // An unset percentile list is Go's nil slice.
    let reply = get(&nsqd, "/config/e2e_processing_latency_percentiles").await;
    assert_eq!(assert_v1_json(&reply), serde_json::Value::Null);
    // Strings go out raw, not JSON-quoted.
    assert_v1_text(&get(&nsqd, "/config/tcp_address").await, "127.0.0.1:0");
    assert_v1_text(&get(&nsqd, "/config/broadcast_address").await, "127.0.0.1");
    // The query is not read.
    assert_eq!(get(&nsqd, "/config/log_level?x=%zz").await.body, "2");

    for unknown in ["nope", "log-level", "LOG_LEVEL", "MsgTimeout"] {
        let reply = get(&nsqd, &format!("/config/{unknown}")).await;
        assert_v1_error(&reply, 400, "INVALID_OPTION");
    }
    nsqd.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_put_changes_only_the_log_level() {
    let nsqd = start_default_nsqd().await;
    let reply = put(&nsqd, "/config/log_level", "debug").await;
    assert_eq!(assert_v1_json(&reply), 1);
    assert_eq!(reply.body, "1");
    assert_eq!(get(&nsqd, "/config/log_level").await.body, "1");
    assert_eq!(put(&nsqd, "/config/log_level", "WARN").await.body, "3");
    assert_eq!(put(&nsqd, "/config/log_level", "error").await.body, "4");
    assert_eq!(put(&nsqd, "/config/log_level", "info").await.body, "2");

    assert_v1_error(
        &put(&nsqd, "/config/log_level", "").await,
        413,
        "INVALID_VALUE",
    );
    // The body is taken as it is: no trimming, no aliases.
    for bad in ["bogus", "debug\n", " info", "warning", "1"] {
        let reply = put(&nsqd, "/config/log_level", bad).await;
        assert_v1_error(&reply, 400, "INVALID_VALUE");
    }
    let too_big = "x".repeat(1024 * 1024 + 1);
    assert_v1_error(
        &put(&nsqd, "/config/log_level", too_big).await,
        413,
        "INVALID_VALUE",
    );
    assert_eq!(get(&nsqd, "/config/log_level").await.body, "2");

    let reply = put(&nsqd, "/config/msg_timeout", "5").await;
    assert_v1_error(&reply, 400, "INVALID_OPTION");
    assert_v1_error(
        &put(&nsqd, "/config/nope", "5").await,
        400,
        "INVALID_OPTION",
    );
    // The value is checked before the option's name.
    assert_v1_error(&put(&nsqd, "/config/nope", "").await, 413, "INVALID_VALUE");
    assert_eq!(get(&nsqd, "/config/msg_timeout").await.body, "60000000000");
    nsqd.shutdown().await;
}
