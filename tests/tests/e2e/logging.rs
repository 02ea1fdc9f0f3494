//! The daemons' logs: upstream's prefixed lines or JSON lines, and the level
//! changed at run time through `/config/log_level`.

use nsq_e2e::*;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_carry_the_prefix_and_the_level_changes_at_run_time() {
    let dir = temp_dir("log-text");
    let d = Daemon::start(&dir, &["--log-prefix=[custom] "]);
    // Client connections are logged at debug: nothing yet.
    Conn::connect_addr(d.tcp).await.publish("t", b"x").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !d.log().contains("client connected"),
        "debug is off by default:\n{}",
        d.log()
    );
    let url = format!("{}/config/log_level", d.http_url());
    let answer = reqwest::Client::new()
        .put(&url)
        .body("debug")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.text().await.unwrap(), "1");
    Conn::connect_addr(d.tcp).await.publish("t", b"y").await;
    eventually("debug lines once the level is debug", || async {
        d.log().contains("client connected")
    })
    .await;
    let log = d.log();
    assert!(
        log.lines().all(|l| l.starts_with("[custom] ")),
        "every line is prefixed:\n{log}"
    );
    assert!(d.terminate().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_are_json_objects() {
    let dir = temp_dir("log-json");
    let d = Daemon::start(&dir, &["--log-format=json"]);
    Conn::connect_addr(d.tcp).await.publish("t", b"x").await;
    eventually("a topic line", || async {
        d.log().contains("topic created")
    })
    .await;
    let log = d.log();
    for line in log.lines() {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            json["level"].is_string() && json["fields"]["message"].is_string(),
            "{line}"
        );
    }
    let created = log.lines().find(|l| l.contains("topic created")).unwrap();
    let json: serde_json::Value = serde_json::from_str(created).unwrap();
    assert_eq!(
        json["fields"]["topic"], "t",
        "structured fields stay fields"
    );
    assert!(d.terminate().success());
}
