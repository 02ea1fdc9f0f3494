//! Stopping a daemon: SIGINT or SIGTERM, caught from the first moment of its
//! runtime, and the whole start-wait-stop life of a daemon's `main`.

/// SIGINT (Ctrl-C) and SIGTERM, caught from the moment this is made: a stop
/// asked for while the program is still starting is kept for [`recv`]
/// instead of killing it. Make it first thing inside the runtime.
///
/// [`recv`]: StopSignals::recv
pub struct StopSignals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn install() -> StopSignals {
        use tokio::signal::unix::{signal, SignalKind};
        StopSignals {
            interrupt: signal(SignalKind::interrupt()).expect("SIGINT handler"),
            terminate: signal(SignalKind::terminate()).expect("SIGTERM handler"),
        }
    }

    /// Completes at the first SIGINT or SIGTERM (at once if one came already).
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// A daemon's whole life in a fresh multi-threaded runtime: `start` it, wait
/// for SIGINT or SIGTERM (caught from the first moment), then `stop` it. The
/// process exits 0, or 1 when it could not start (the error is logged).
/// First, the soft limit on open files goes up to the hard one, as a Go
/// daemon's does ([`crate::limits`]).
pub fn run_until_stopped<T, E, Start, Stop>(
    start: impl FnOnce() -> Start,
    stop: impl FnOnce(T) -> Stop,
) -> !
where
    Start: std::future::Future<Output = Result<T, E>>,
    Stop: std::future::Future<Output = ()>,
    E: std::fmt::Display,
{
    match crate::limits::raise_open_files() {
        Ok(before) if before.soft < before.hard => {
            tracing::debug!(
                from = before.soft,
                to = before.hard,
                "raised the open files limit"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(async move {
        let mut signals = StopSignals::install();
        let daemon = match start().await {
            Ok(daemon) => daemon,
            Err(e) => {
                tracing::error!(error = %e, "failed to start");
                return 1;
            }
        };
        signals.recv().await;
        stop(daemon).await;
        0
    });
    std::process::exit(code)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM received from now on.
pub async fn wait_for_signal() {
    StopSignals::install().recv().await
}
