//! Helpers for the end-to-end tests in `tests/tests/`: start daemons on
//! loopback port 0 and talk to them over real sockets, as clients do.

use bytes::BytesMut;
use nsq::protocol::{decode_frame, Command, Frame, FrameType, Message, MessageId, MAGIC_V2};
use std::path::PathBuf;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub use nsqd::{Nsqd, Options};

/// Options for a test nsqd: loopback, port 0, a fresh data directory.
pub fn test_options() -> Options {
    Options {
        tcp_address: "127.0.0.1:0".into(),
        http_address: "127.0.0.1:0".into(),
        broadcast_address: "127.0.0.1".into(),
        data_path: temp_dir("nsqd"),
        ..Options::default()
    }
}

/// The Python interpreter named by `NSQ_TEST_PYTHON`, for the tests that
/// run a third-party Python library (pynsq, prometheus_client): tests/run-all.sh
/// builds a venv with them and exports it. `None` skips such a test outside
/// CI; in CI (`CI` set) a missing interpreter fails it.
pub fn test_python() -> Option<PathBuf> {
    match std::env::var_os("NSQ_TEST_PYTHON") {
        Some(path) if !path.is_empty() => Some(PathBuf::from(path)),
        _ if std::env::var_os("CI").is_some() => panic!(
            "NSQ_TEST_PYTHON is not set, and CI must run the tests against Python libraries: \
             run tests/run-all.sh, which creates tests/.venv and exports it"
        ),
        _ => {
            eprintln!("skipped: NSQ_TEST_PYTHON not set");
            None
        }
    }
}

/// The script `tests/python/<name>` run by `python`, its output piped.
pub fn python_script(python: &std::path::Path, name: &str) -> std::process::Command {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("python")
        .join(name);
    let mut command = std::process::Command::new(python);
    command
        .arg(script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    command
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(prefix: &str) -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

pub async fn start_nsqd(opts: Options) -> Nsqd {
    Nsqd::start(opts).await.expect("nsqd starts")
}

pub async fn start_default_nsqd() -> Nsqd {
    start_nsqd(test_options()).await
}

/// The base URL of an nsqd's HTTP API.
pub fn http_url(nsqd: &Nsqd) -> String {
    format!("http://{}", nsqd.http_addr().expect("HTTP enabled"))
}

/// How long a test waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(5);

/// A raw protocol V2 connection.
pub struct Conn {
    pub stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    /// Connects and sends the magic.
    pub async fn connect(nsqd: &Nsqd) -> Conn {
        let mut conn = Conn::connect_raw(nsqd).await;
        conn.send_raw(MAGIC_V2).await;
        conn
    }

    /// Connects without sending anything.
    pub async fn connect_raw(nsqd: &Nsqd) -> Conn {
        let stream = TcpStream::connect(nsqd.tcp_addr()).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            stream,
            buf: BytesMut::new(),
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn send(&mut self, cmd: Command) {
        self.send_raw(&cmd.to_bytes()).await;
    }

    /// The next frame, or `None` when the server closed the connection.
    /// Panics if nothing arrives within `PATIENCE`.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        self.read_frame_within(PATIENCE)
            .await
            .expect("a frame or EOF within patience")
    }

    /// `Err(())` on timeout, `Ok(None)` on EOF.
    pub async fn read_frame_within(&mut self, limit: Duration) -> Result<Option<Frame>, ()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(frame) = decode_frame(&mut self.buf, 64 << 20).expect("well-formed frame") {
                return Ok(Some(frame));
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Next frame that is not a heartbeat.
    pub async fn read_non_heartbeat(&mut self) -> Option<Frame> {
        loop {
            let frame = self.read_frame().await?;
            if !(frame.frame_type == FrameType::Response && &frame.data[..] == b"_heartbeat_") {
                return Some(frame);
            }
        }
    }

    pub async fn expect_response(&mut self, body: &str) {
        let frame = self.read_non_heartbeat().await.expect("a frame");
        assert_eq!(
            (
                frame.frame_type,
                String::from_utf8_lossy(&frame.data).into_owned()
            ),
            (FrameType::Response, body.to_string())
        );
    }

    /// Expects an error frame with exactly this text.
    pub async fn expect_error(&mut self, text: &str) {
        let frame = self.read_non_heartbeat().await.expect("an error frame");
        assert_eq!(
            (
                frame.frame_type,
                String::from_utf8_lossy(&frame.data).into_owned()
            ),
            (FrameType::Error, text.to_string())
        );
    }

    /// Expects the server to close the connection (after any pending frames).
    pub async fn expect_closed(&mut self) {
        assert!(
            self.read_non_heartbeat().await.is_none(),
            "connection should be closed"
        );
    }

    pub async fn expect_message(&mut self) -> Message {
        let frame = self.read_non_heartbeat().await.expect("a message frame");
        assert_eq!(
            frame.frame_type,
            FrameType::Message,
            "got {:?}",
            String::from_utf8_lossy(&frame.data)
        );
        Message::decode(frame.data).expect("valid message")
    }

    /// Asserts that no frame other than heartbeats arrives within `limit`.
    pub async fn expect_silence(&mut self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.read_frame_within(left).await {
                Err(()) => return,
                Ok(Some(f))
                    if f.frame_type == FrameType::Response && &f.data[..] == b"_heartbeat_" =>
                {
                    continue
                }
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
    }

    pub async fn publish(&mut self, topic: &str, body: &[u8]) {
        self.send(Command::Pub {
            topic: topic.into(),
            body: body.to_vec().into(),
        })
        .await;
        self.expect_response("OK").await;
    }

    /// SUB and wait for its OK.
    pub async fn subscribe(&mut self, topic: &str, channel: &str) {
        self.send(Command::Sub {
            topic: topic.into(),
            channel: channel.into(),
        })
        .await;
        self.expect_response("OK").await;
    }

    pub async fn rdy(&mut self, count: u32) {
        self.send(Command::Rdy(count)).await;
    }

    pub async fn fin(&mut self, id: MessageId) {
        self.send(Command::Fin(id)).await;
    }
}

/// A consumer connection already subscribed with the given RDY.
pub async fn consumer(nsqd: &Nsqd, topic: &str, channel: &str, rdy: u32) -> Conn {
    let mut conn = Conn::connect(nsqd).await;
    conn.subscribe(topic, channel).await;
    if rdy > 0 {
        conn.rdy(rdy).await;
    }
    conn
}

/// GET an nsqd HTTP path and decode the JSON.
/// One HTTP client for the helpers: building one loads the system's
/// certificates, too slow to do for every poll of `/stats`. It keeps no idle
/// connections, so it serves any test's runtime.
pub fn http_client() -> &'static reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .expect("HTTP client")
    })
}

pub async fn get_json(nsqd: &Nsqd, path: &str) -> serde_json::Value {
    http_client()
        .get(format!("{}{path}", http_url(nsqd)))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON body")
}

/// `/stats?format=json` as our typed view.
pub async fn stats(nsqd: &Nsqd) -> nsq::api::Stats {
    let body = http_client()
        .get(format!("{}/stats?format=json", http_url(nsqd)))
        .send()
        .await
        .expect("GET /stats")
        .text()
        .await
        .expect("body");
    serde_json::from_str(&body).expect("stats JSON")
}

/// `topic` as `nsqd` reports it now, if it exists.
pub async fn topic_stats(nsqd: &Nsqd, topic: &str) -> Option<nsq::api::TopicStats> {
    stats(nsqd)
        .await
        .topics
        .unwrap_or_default()
        .into_iter()
        .find(|t| t.topic_name == topic)
}

/// Messages `topic` has taken on `nsqd` (0 if it does not exist).
pub async fn topic_message_count(nsqd: &Nsqd, topic: &str) -> u64 {
    topic_stats(nsqd, topic)
        .await
        .map_or(0, |t| t.message_count)
}

/// `topic/channel` as `nsqd` reports it now, if it exists.
pub async fn channel_stats(
    nsqd: &Nsqd,
    topic: &str,
    channel: &str,
) -> Option<nsq::api::ChannelStats> {
    topic_stats(nsqd, topic)
        .await?
        .channels
        .into_iter()
        .find(|c| c.channel_name == channel)
}

/// Waits until `check` holds, polling; panics after `PATIENCE`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Path of an upstream v1.3.0 capture under `tests/fixtures/nsq-samples`.
pub fn sample_path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/nsq-samples")
        .join(relative)
}

/// The real `nsqd` binary, run as a child process (for restarts and crashes).
pub struct Daemon {
    pub child: std::process::Child,
    pub tcp: std::net::SocketAddr,
    pub http: std::net::SocketAddr,
    /// Everything it logged, for assertions and failure reports.
    pub log: std::sync::Arc<std::sync::Mutex<String>>,
}

/// Path of a binary built from this workspace (`cargo build --workspace`,
/// which the test command runs, builds it next to the test executables).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

impl Daemon {
    /// Starts nsqd on loopback port 0 with `data_path` and extra flags, and
    /// waits until it listens.
    pub fn start(data_path: &std::path::Path, extra: &[&str]) -> Daemon {
        Daemon::start_with(
            std::process::Command::new(workspace_binary("nsqd")),
            "127.0.0.1",
            data_path,
            extra,
        )
    }

    /// As [`Daemon::start`], inside network namespace `netns`, listening on `ip`.
    pub fn start_in_netns(
        netns: &str,
        ip: &str,
        data_path: &std::path::Path,
        extra: &[&str],
    ) -> Daemon {
        let mut command = std::process::Command::new("ip");
        command
            .args(["netns", "exec", netns])
            .arg(workspace_binary("nsqd"));
        Daemon::start_with(command, ip, data_path, extra)
    }

    fn start_with(
        mut command: std::process::Command,
        ip: &str,
        data_path: &std::path::Path,
        extra: &[&str],
    ) -> Daemon {
        use std::io::BufRead;
        let mut child = command
            .arg(format!("--tcp-address={ip}:0"))
            .arg(format!("--http-address={ip}:0"))
            .arg(format!("--broadcast-address={ip}"))
            .arg(format!("--data-path={}", data_path.display()))
            .args(extra)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn nsqd");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if line.contains("listening") {
                    // Text lines end `address=HOST:PORT`; JSON lines carry it as a field.
                    let addr = match serde_json::from_str::<serde_json::Value>(&line) {
                        Ok(json) => json["fields"]["address"].as_str().map(str::to_string),
                        Err(_) => line.split("address=").nth(1).map(|a| a.trim().to_string()),
                    };
                    if let Some(addr) = addr {
                        let _ = tx.send((line.contains("TCP"), addr));
                    }
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (mut tcp, mut http) = (None, None);
        while tcp.is_none() || http.is_none() {
            match rx.recv_timeout(Duration::from_secs(10)) {
                Ok((true, addr)) => tcp = addr.parse().ok(),
                Ok((false, addr)) => http = addr.parse().ok(),
                Err(_) => panic!("nsqd did not start; log:\n{}", log.lock().unwrap()),
            }
        }
        Daemon {
            child,
            tcp: tcp.unwrap(),
            http: http.unwrap(),
            log,
        }
    }

    /// SIGTERM, then waits for the exit status (bounded).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nsqd did not exit on SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: a crash.
    pub fn kill(mut self) {
        self.child.kill().expect("kill -9");
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Conn {
    /// Connects to any address speaking protocol V2.
    pub async fn connect_addr(addr: std::net::SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut conn = Conn {
            stream,
            buf: BytesMut::new(),
        };
        conn.send_raw(MAGIC_V2).await;
        conn
    }
}

/// An nsqlookupd on loopback, port 0.
pub async fn start_lookupd() -> nsqlookupd::Lookupd {
    nsqlookupd::Lookupd::start(nsqlookupd::Options {
        tcp_address: "127.0.0.1:0".into(),
        http_address: "127.0.0.1:0".into(),
        broadcast_address: "127.0.0.1".into(),
        ..nsqlookupd::Options::default()
    })
    .await
    .expect("nsqlookupd starts")
}

/// Options for a test nsqd that registers with `lookupds`.
pub fn options_with_lookupds(lookupds: &[&nsqlookupd::Lookupd]) -> Options {
    let mut opts = test_options();
    opts.nsqlookupd_tcp_addresses = lookupds.iter().map(|l| l.tcp_addr().to_string()).collect();
    opts
}

/// An HTTP answer: status, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: not JSON: {:?}", self.body))
    }
}

/// One HTTP request to `base` (`http://host:port`), not following redirects,
/// so that tests see exactly what the daemon answered.
pub async fn http_request(
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: bytes::Bytes,
) -> Reply {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client");
    let response = client
        .request(method, format!("{base}{path}"))
        .body(body)
        .send()
        .await
        .expect("HTTP request");
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), v.to_str().expect("ASCII").into()))
        .collect();
    let body = response.text().await.expect("body");
    Reply {
        status,
        headers,
        body,
    }
}

/// A tool of this workspace running as a child process. Its output is
/// collected as it comes, so that a chatty tool never blocks on a full pipe,
/// and it is killed if the test ends without stopping it.
pub struct ToolProcess {
    child: Option<std::process::Child>,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// How a tool ended.
#[derive(Debug)]
pub struct ToolExit {
    pub status: std::process::ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl ToolProcess {
    /// Starts `name` (see [`workspace_binary`]) with `args` and no stdin.
    pub fn spawn<S: AsRef<std::ffi::OsStr>>(name: &str, args: &[S]) -> ToolProcess {
        use std::io::Read;
        use std::process::Stdio;
        let mut child = std::process::Command::new(workspace_binary(name))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
        let collect = |mut pipe: Box<dyn Read + Send>| {
            let sink = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
            let into = sink.clone();
            let reader = std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n @ 1..) = pipe.read(&mut buf) {
                    into.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
            (sink, reader)
        };
        let (stdout, out_reader) = collect(Box::new(child.stdout.take().expect("piped stdout")));
        let (stderr, err_reader) = collect(Box::new(child.stderr.take().expect("piped stderr")));
        ToolProcess {
            child: Some(child),
            stdout,
            stderr,
            readers: vec![out_reader, err_reader],
        }
    }

    /// Sends a signal by name (`TERM`, `HUP`, `INT`).
    pub fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), pid])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Everything it has written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (without blocking the runtime) for it to exit; kills it and
    /// fails if that takes longer than `limit`.
    pub async fn wait(mut self, limit: Duration) -> ToolExit {
        let mut child = self.child.take().expect("running");
        let deadline = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("tool did not exit in {limit:?}; stderr:\n{}", self.stderr());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        // The pipes reach EOF with the exit: the readers have everything.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        ToolExit {
            status,
            stdout: self.stdout.lock().unwrap().clone(),
            stderr: self.stderr(),
        }
    }
}

impl Drop for ToolProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                eprintln!("tool stderr:\n{}", self.stderr());
            }
        }
    }
}

/// Every JSON object key in document order (`"name":`), to compare field order.
pub fn keys_in_order(json: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = json;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('"') else { break };
        let tail = &after[end + 1..];
        if tail.starts_with(':') {
            keys.push(after[..end].to_string());
        }
        rest = tail;
    }
    keys
}

/// A certificate authority and certificates made at test time (rcgen), as
/// PEM files in a fresh directory: a server certificate for `127.0.0.1` and
/// `localhost`, a client certificate (CN `test-client`) from the same CA, and
/// a self-signed client certificate (CN `rogue`) that the CA never signed.
pub struct TestPki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

impl TestPki {
    pub fn new() -> TestPki {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType,
            ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
        };
        let dir = temp_dir("pki");
        let named = |sans: &[&str], cn: &str| {
            let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
            let mut params = CertificateParams::new(sans).expect("certificate params");
            params.distinguished_name = DistinguishedName::new();
            params.distinguished_name.push(DnType::CommonName, cn);
            params
        };
        let write = |name: &str, pem: String| {
            let path = dir.join(name);
            std::fs::write(&path, pem).expect("write PEM");
            path
        };
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca = named(&[], "nsq test CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = ca.self_signed(&ca_key).expect("CA certificate");
        let leaf = |sans: &[&str], cn: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().expect("key");
            let mut params = named(sans, cn);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &ca, &ca_key).expect("certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server, server_key) = leaf(
            &["127.0.0.1", "localhost"],
            "nsqd",
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client, client_key) = leaf(&[], "test-client", ExtendedKeyUsagePurpose::ClientAuth);
        let rogue_key = KeyPair::generate().expect("key");
        let rogue = named(&[], "rogue").self_signed(&rogue_key).expect("rogue");
        TestPki {
            ca_cert: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server),
            server_key: write("server.key", server_key),
            client_cert: write("client.pem", client),
            client_key: write("client.key", client_key),
            rogue_cert: write("rogue.pem", rogue.pem()),
            rogue_key: write("rogue.key", rogue_key.serialize_pem()),
            dir,
        }
    }

    /// Trusts the test CA; with `cert`, shows the client certificate.
    pub fn client_tls(&self, cert: bool) -> nsq::tls::TlsClientOptions {
        nsq::tls::TlsClientOptions {
            root_ca_file: Some(self.ca_cert.clone()),
            cert: cert.then(|| self.client_cert.clone()),
            key: cert.then(|| self.client_key.clone()),
            ..Default::default()
        }
    }

    /// Options for a test nsqd with this PKI's server certificate and an
    /// HTTPS listener on loopback port 0.
    pub fn nsqd_options(&self) -> Options {
        Options {
            tls_cert: self.server_cert.display().to_string(),
            tls_key: self.server_key.display().to_string(),
            https_address: "127.0.0.1:0".into(),
            ..test_options()
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

/// The base URL of an nsqd's HTTPS API.
pub fn https_url(nsqd: &Nsqd) -> String {
    format!("https://{}", nsqd.https_addr().expect("HTTPS enabled"))
}
