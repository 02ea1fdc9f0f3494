//! nsqadmin in a real browser: headless Chromium driven over WebDriver
//! (chromedriver) watches a topic's depth grow as messages are published,
//! opens the channel, presses Pause, confirms, and nsqd's `/stats` shows the
//! channel paused. Screenshots go to `<target>/tmp/nsqadmin-browser/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (tests/run-all.sh installs
//! them); without them the test fails rather than skip.

use fantoccini::elements::Element;
use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nsq_e2e::{
    eventually_within, options_with_lookupds, start_lookupd, start_nsqd, stats, temp_dir, Conn,
};
use nsqadmin::{NsqAdmin, Options as AdminOptions};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long the browser steps may take on a loaded machine: Chromium starts
/// slowly when the cores are busy with builds.
const BROWSER_PATIENCE: Duration = Duration::from_secs(60);

/// chromedriver on a free loopback port, in a process group of its own with
/// the Chromium it starts, all killed on drop. Its output goes to
/// `chromedriver.log` in [`output_dir`].
struct Driver {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Driver {
    async fn start() -> Driver {
        for tool in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: install Debian's chromium and chromium-driver (tests/run-all.sh does)"
            );
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let log = output_dir().join("chromedriver.log");
        let file = std::fs::File::create(&log).expect("chromedriver log");
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        // Owned from here on: a panic below still kills it.
        let mut driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let status = format!("{}/status", driver.url);
        let deadline = tokio::time::Instant::now() + BROWSER_PATIENCE;
        loop {
            if reqwest::get(&status)
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return driver;
            }
            if let Some(exit) = driver.child.try_wait().expect("try_wait") {
                panic!("chromedriver exited ({exit}); log:\n{}", driver.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver not ready after {BROWSER_PATIENCE:?}; log:\n{}",
                driver.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: Chromium outlives a killed chromedriver otherwise.
        let group = self.child.id() as libc::pid_t;
        // SAFETY: a plain kill(2) of the group this test started.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("chromedriver log:\n{}", self.log());
        }
    }
}

/// The page replaces its content on every refresh, so an element found a
/// moment ago may be gone: find it again and retry, a few times.
async fn with_fresh<T, F, Fut>(
    browser: &Client,
    locator: Locator<'_>,
    act: F,
) -> Result<T, CmdError>
where
    F: Fn(Element) -> Fut,
    Fut: std::future::Future<Output = Result<T, CmdError>>,
{
    let mut tries = 0;
    loop {
        let element = browser.wait().for_element(locator).await?;
        match act(element).await {
            Err(CmdError::Standard(e))
                if e.error == ErrorStatus::StaleElementReference && tries < 10 =>
            {
                tries += 1;
            }
            other => return other,
        }
    }
}

fn output_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nsqadmin-browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

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
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    let browser = tokio::time::timeout(
        BROWSER_PATIENCE,
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url),
    )
    .await
    .unwrap_or_else(|_| panic!("no Chromium session in {BROWSER_PATIENCE:?}"))
    .expect("a Chromium session");
    // In a task of its own, so that a failed assertion still ends the
    // session below and Chromium exits with it.
    let session = tokio::spawn({
        let browser = browser.clone();
        async move {
            // The topics page lists the topic with its channel's depth...
            browser.goto(&format!("{base}/topics")).await?;
            let depth = r#"tr[data-topic="clicks"] td.channel-depth"#;
            let text = with_fresh(
                &browser,
                Locator::Css(depth),
                |e| async move { e.text().await },
            )
            .await?;
            assert_eq!(text, "5");
            // ...and the number grows on its own as messages arrive.
            for i in 5..25 {
                producer
                    .publish("clicks", format!("click {i}").as_bytes())
                    .await;
            }
            let deadline = tokio::time::Instant::now() + BROWSER_PATIENCE;
            loop {
                let text = with_fresh(
                    &browser,
                    Locator::Css(depth),
                    |e| async move { e.text().await },
                )
                .await?;
                if text == "25" {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "depth stayed at {text}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }

            // Into the topic, then its channel.
            let click = |e: Element| async move { e.click().await };
            with_fresh(
                &browser,
                Locator::Css(r#"tr[data-topic="clicks"] a"#),
                click,
            )
            .await?;
            browser
                .wait()
                .for_element(Locator::Css(r#"tr[data-channel="archive"] a"#))
                .await?;
            // Let the charts collect a few samples for the screenshot.
            tokio::time::sleep(Duration::from_secs(3)).await;
            browser.refresh().await?;
            let shot = browser.screenshot().await?;
            std::fs::write(output_dir().join("topic.png"), shot).unwrap();
            with_fresh(
                &browser,
                Locator::Css(r#"tr[data-channel="archive"] a"#),
                click,
            )
            .await?;
            let pause = r#"//button[@class="action" and text()="Pause"]"#;
            with_fresh(&browser, Locator::XPath(pause), click).await?;
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
    let outcome = session.await;
    let _ = browser.close().await;
    match outcome {
        Ok(result) => result.expect("the browser session"),
        Err(failed) => std::panic::resume_unwind(failed.into_panic()),
    }

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
