//! Temporary directories that go away with the test that made them.
//!
//! Every directory lives under one root per test process,
//! `$TMPDIR/nsq-e2e-<pid>`. A [`TempDir`] removes its own directory when it is
//! dropped, also while a failing test unwinds. Directories handed to a daemon
//! that outlives the guard (an nsqd's `--data-path` from [`crate::test_options`])
//! go with the root, which is removed when the process exits, pass or fail.
//! Roots left by processes that were killed are removed by the next test
//! process that starts.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

const ROOT_PREFIX: &str = "nsq-e2e-";

/// A fresh directory, removed with everything in it when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Gives up the guard: the directory then lasts until the process exits.
    pub fn into_path(self) -> PathBuf {
        let path = self.path.clone();
        std::mem::forget(self);
        path
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A fresh directory named after `prefix`, under this process's root.
pub fn temp_dir(prefix: &str) -> TempDir {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let path = root().join(format!("{prefix}-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&path).expect("create temp dir");
    TempDir { path }
}

/// This process's root, made on first use, with its removal at exit registered.
fn root() -> &'static Path {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    ROOT.get_or_init(|| {
        remove_roots_of_dead_processes();
        let root = std::env::temp_dir().join(format!("{ROOT_PREFIX}{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("create temp root");
        // SAFETY: `remove_root` is an `extern "C" fn()` that neither unwinds
        // nor relies on thread-locals.
        unsafe { libc::atexit(remove_root) };
        root
    })
}

extern "C" fn remove_root() {
    let root = std::env::temp_dir().join(format!("{ROOT_PREFIX}{}", std::process::id()));
    let _ = std::fs::remove_dir_all(root);
}

/// Roots whose process is gone: a test that was killed (a timeout, ^C) runs
/// no exit handler.
fn remove_roots_of_dead_processes() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(ROOT_PREFIX))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
