//! Programs run as child processes: the daemons' and tools' binaries, and
//! the Python scripts of the compatibility tests.

use std::path::PathBuf;
use std::time::Duration;

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

    /// As [`Daemon::start`], listening on `ip` (an address of this
    /// namespace other than 127.0.0.1, such as a veth end).
    pub fn start_on(ip: &str, data_path: &std::path::Path, extra: &[&str]) -> Daemon {
        let command = std::process::Command::new(workspace_binary("nsqd"));
        Daemon::start_with(command, ip, data_path, extra)
    }

    /// As [`Daemon::start`], on TCP port `tcp_port` (one that a peer's
    /// `--replicate-to` names across restarts).
    ///
    /// The port is tried again for a few seconds while it is in use: tests
    /// running at once take ephemeral ports, and one may hold it a moment.
    pub fn start_at(data_path: &std::path::Path, tcp_port: u16, extra: &[&str]) -> Daemon {
        let deadline = std::time::Instant::now() + crate::PATIENCE;
        loop {
            let mut command = std::process::Command::new(workspace_binary("nsqd"));
            command.arg(format!("--tcp-address=127.0.0.1:{tcp_port}"));
            match Daemon::try_start_with(command, "127.0.0.1", data_path, extra) {
                Ok(daemon) => return daemon,
                Err(log) if log.contains("in use") && std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(log) => panic!("nsqd did not start; log:\n{log}"),
            }
        }
    }

    /// As [`Daemon::start`], with environment variables set for nsqd.
    pub fn start_with_env(
        data_path: &std::path::Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut command = std::process::Command::new(workspace_binary("nsqd"));
        command.envs(env.iter().copied());
        Daemon::start_with(command, "127.0.0.1", data_path, extra)
    }

    /// As [`Daemon::start`], with the soft limit on open files lowered to
    /// `soft` (the hard limit as it is), as a service manager may start it.
    pub fn start_with_open_files(soft: u64, data_path: &std::path::Path, extra: &[&str]) -> Daemon {
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit -Sn {soft} && exec \"$0\" \"$@\""))
            .arg(workspace_binary("nsqd"));
        Daemon::start_with(command, "127.0.0.1", data_path, extra)
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
        command: std::process::Command,
        ip: &str,
        data_path: &std::path::Path,
        extra: &[&str],
    ) -> Daemon {
        Daemon::try_start_with(command, ip, data_path, extra)
            .unwrap_or_else(|log| panic!("nsqd did not start; log:\n{log}"))
    }

    /// As [`Daemon::start_with`]; what nsqd logged when it did not start.
    fn try_start_with(
        mut command: std::process::Command,
        ip: &str,
        data_path: &std::path::Path,
        extra: &[&str],
    ) -> Result<Daemon, String> {
        use std::io::BufRead;
        let has_tcp = command
            .get_args()
            .any(|a| a.to_string_lossy().starts_with("--tcp-address="));
        if !has_tcp {
            command.arg(format!("--tcp-address={ip}:0"));
        }
        let mut child = command
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
                Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(log.lock().unwrap().clone());
                }
            }
        }
        Ok(Daemon {
            child,
            tcp: tcp.unwrap(),
            http: http.unwrap(),
            log,
        })
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

impl crate::http::HttpApi for Daemon {
    fn base_url(&self) -> String {
        self.http_url()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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
        let mut command = std::process::Command::new(workspace_binary(name));
        command.args(args);
        ToolProcess::start(command)
    }

    /// Starts `command` (a tool, its arguments, maybe a working directory),
    /// with no stdin.
    pub fn start(mut command: std::process::Command) -> ToolProcess {
        use std::io::Read;
        use std::process::Stdio;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {:?}: {e}", command.get_program()));
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

    /// Whether it has exited already.
    pub fn has_exited(&mut self) -> bool {
        let child = self.child.as_mut().expect("running");
        child.try_wait().expect("try_wait").is_some()
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
