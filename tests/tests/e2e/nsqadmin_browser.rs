//! nsqadmin in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) watches a topic's depth grow as messages are published,
//! opens the channel, presses Pause, confirms, and nsqd's `/stats` shows the
//! channel paused. Screenshots go to `<target>/tmp/nsqadmin-browser/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (tests/run-all.sh installs
//! them); without them the test fails rather than skip.

use crate::browser;

use browser::{click, output_dir, text, wait_for_text, Driver, BROWSER_PATIENCE};
use fantoccini::Locator;
use nsq_e2e::{
    eventually_within, options_with_lookupds, start_lookupd, start_nsqd, stats, temp_dir, Conn,
};
use nsqadmin::{NsqAdmin, Options as AdminOptions};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_watches_depth_and_pauses_a_channel() {
    let lookupd = start_lookupd().await;
    let nsqd = start_nsqd(options_with_lookupds(&[&lookupd])).await;
    let api = nsq::NsqdHttp::new(&nsqd.http_addr().unwrap().to_string());
    api.topic_action(nsq::TopicAction::Create, "clicks")
        .await
        .unwrap();
    api.channel_action(nsq::TopicAction::Create, "clicks", "archive")
        .await
        .unwrap();
    let mut producer = Conn::connect(&nsqd).await;
    for i in 0..5 {
        producer
            .publish("clicks", format!("click {i}").as_bytes())
            .await;
    }
    let admin = NsqAdmin::start(AdminOptions {
        http_address: "127.0.0.1:0".into(),
        nsqlookupd_http_addresses: vec![lookupd.http_addr().to_string()],
        history_interval: Duration::from_secs(1),
        ..AdminOptions::default()
    })
    .await
    .unwrap();
    let base = format!("http://{}", admin.http_addr());
    let lookup = nsq::LookupdHttp::new(&lookupd.http_addr().to_string());
    eventually_within("nsqd registered the topic", BROWSER_PATIENCE, || async {
        lookup
            .lookup("clicks")
            .await
            .is_ok_and(|l| !l.producers.is_empty())
    })
    .await;

    let driver = Driver::start().await;
    let profile = temp_dir("chromium-profile");
    let browser = browser::open(&driver, &profile).await;
    // In a task of its own, so that a failed assertion still ends the
    // session below and Chromium exits with it.
    let session = tokio::spawn({
        let browser = browser.clone();
        async move {
            // The topics page lists the topic with its channel's depth...
            browser.goto(&format!("{base}/topics")).await?;
            let depth = Locator::Css(r#"tr[data-topic="clicks"] td.channel-depth"#);
            assert_eq!(text(&browser, depth).await?, "5");
            // ...and the number grows on its own as messages arrive.
            for i in 5..25 {
                producer
                    .publish("clicks", format!("click {i}").as_bytes())
                    .await;
            }
            wait_for_text(&browser, depth, "25").await?;

            // Into the topic, then its channel.
            click(&browser, Locator::Css(r#"tr[data-topic="clicks"] a"#)).await?;
            browser
                .wait()
                .for_element(Locator::Css(r#"tr[data-channel="archive"] a"#))
                .await?;
            // Let the charts collect a few samples for the screenshot.
            tokio::time::sleep(Duration::from_secs(3)).await;
            browser.refresh().await?;
            let shot = browser.screenshot().await?;
            std::fs::write(output_dir().join("topic.png"), shot).unwrap();
            click(&browser, Locator::Css(r#"tr[data-channel="archive"] a"#)).await?;
            let pause = r#"//button[@class="action" and text()="Pause"]"#;
            click(&browser, Locator::XPath(pause)).await?;
            // The confirmation dialog names the channel; accept it.
            let question = browser.get_alert_text().await?;
            assert!(question.contains("archive"), "{question}");
            browser.accept_alert().await?;
            browser.wait().for_element(Locator::Css("#paused")).await?;
            let shot = browser.screenshot().await?;
            std::fs::write(output_dir().join("channel-paused.png"), shot).unwrap();
            Ok::<_, fantoccini::error::CmdError>(())
        }
    });
    browser::finish(browser, session).await;

    let stats = stats(&nsqd).await;
    let channel = stats
        .topics
        .unwrap()
        .into_iter()
        .find(|t| t.topic_name == "clicks")
        .and_then(|t| t.channels.into_iter().find(|c| c.channel_name == "archive"))
        .expect("the channel");
    assert!(channel.paused, "nsqd has the channel paused");
    assert_eq!(channel.depth, 25);
}
