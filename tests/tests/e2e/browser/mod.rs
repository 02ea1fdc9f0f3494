//! Headless Chromium driven over WebDriver (chromedriver), for nsqadmin's
//! browser tests: the driver process, a session, and finding elements on a
//! page that refreshes itself. Screenshots go to `<target>/tmp/nsqadmin-browser/`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (tests/run-all.sh installs
//! them); without them a test fails rather than skip.

use fantoccini::elements::Element;
use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// How long the browser steps may take on a loaded machine: Chromium starts
/// slowly when the cores are busy with builds.
pub const BROWSER_PATIENCE: Duration = Duration::from_secs(60);

/// chromedriver on a free loopback port, in a process group of its own with
/// the Chromium it starts, all killed on drop. Its output goes to
/// `chromedriver.log` in [`output_dir`].
pub struct Driver {
    child: Child,
    pub url: String,
    log: PathBuf,
}

impl Driver {
    pub async fn start() -> Driver {
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
pub async fn with_fresh<T, F, Fut>(
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

/// Waits for a test's browser steps, run as `session` (a task of its own so
/// that a failed assertion still ends here), for at most four times
/// [`BROWSER_PATIENCE`]; closes Chromium whatever happened, then passes the
/// steps' failure on.
pub async fn finish(browser: Client, session: tokio::task::JoinHandle<Result<(), CmdError>>) {
    let outcome = tokio::time::timeout(4 * BROWSER_PATIENCE, session).await;
    let _ = browser.close().await;
    match outcome {
        Ok(Ok(result)) => result.expect("the browser session"),
        Ok(Err(failed)) => std::panic::resume_unwind(failed.into_panic()),
        Err(_) => panic!("the browser session took over {:?}", 4 * BROWSER_PATIENCE),
    }
}

pub fn output_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("nsqadmin-browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Chromium session through `driver`, headless, with its profile in `profile`.
pub async fn open(driver: &Driver, profile: &Path) -> Client {
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
    tokio::time::timeout(
        BROWSER_PATIENCE,
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url),
    )
    .await
    .unwrap_or_else(|_| panic!("no Chromium session in {BROWSER_PATIENCE:?}"))
    .expect("a Chromium session")
}

/// Clicks the element, found afresh if the page replaced it meanwhile.
pub async fn click(browser: &Client, locator: Locator<'_>) -> Result<(), CmdError> {
    with_fresh(
        browser,
        locator,
        |e: Element| async move { e.click().await },
    )
    .await
}

/// The element's text, found afresh if the page replaced it meanwhile.
pub async fn text(browser: &Client, locator: Locator<'_>) -> Result<String, CmdError> {
    with_fresh(browser, locator, |e: Element| async move { e.text().await }).await
}

/// Waits until the element's text is `expected`, through the page's refreshes.
pub async fn wait_for_text(
    browser: &Client,
    locator: Locator<'_>,
    expected: &str,
) -> Result<(), CmdError> {
    let deadline = tokio::time::Instant::now() + BROWSER_PATIENCE;
    loop {
        let now = text(browser, locator).await?;
        if now == expected {
            return Ok(());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{locator:?} stayed at {now:?}, not {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The text of `cell` in every row of `table`'s body, read in one go in the
/// page, so that a refresh in between cannot leave a row stale.
pub async fn column(browser: &Client, table: &str, cell: &str) -> Result<Vec<String>, CmdError> {
    let script = format!(
        "return Array.from(document.querySelectorAll('{table} tbody tr'))\
         .map(r => {{ const c = r.querySelector('{cell}'); return c ? c.textContent.trim() : ''; }});"
    );
    let found = browser.execute(&script, Vec::new()).await?;
    Ok(serde_json::from_value(found).unwrap_or_default())
}
