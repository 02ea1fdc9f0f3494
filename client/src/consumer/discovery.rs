//! How a consumer finds the nsqd that have its topic: it polls every
//! nsqlookupd's `/lookup` (through [`LookupdHttp`]) and connects to the
//! union of what they report.

use super::Inner;
use crate::api::PeerInfo;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::http_client::{HttpPool, LookupdHttp};
use std::sync::Arc;
use std::time::Duration;

/// The pool that polls lookupds. `https://` lookupds are verified with
/// the consumer's TLS options (its CA, its client certificate) when any are
/// set, else with the system's roots.
pub(super) fn http_pool(config: &Config) -> Result<HttpPool> {
    let failed = |message: String| Error::Lookupd {
        addr: String::new(),
        message,
    };
    let mut builder = reqwest::Client::builder()
        .timeout(config.lookupd_poll_timeout)
        .connect_timeout(config.dial_timeout)
        .user_agent(config.user_agent.clone());
    if config.tls != crate::tls::TlsClientOptions::default() {
        let tls = config.tls.client_config().map_err(|e| failed(e.0))?;
        builder = builder.use_preconfigured_tls((*tls).clone());
    }
    let client = builder.build().map_err(|e| failed(e.to_string()))?;
    Ok(HttpPool::from_client(client))
}

/// The TCP addresses (`broadcast_address:tcp_port`) of the nsqd lookupd
/// reports for `topic`. An unknown topic has none.
async fn lookup(pool: &HttpPool, lookupd: &str, topic: &str) -> Result<Vec<String>> {
    let answer = match LookupdHttp::with_pool(lookupd, pool).lookup(topic).await {
        Ok(answer) => answer,
        Err(Error::Http {
            status: Some(404), ..
        }) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut addrs: Vec<String> = answer.producers.iter().map(PeerInfo::tcp_address).collect();
    addrs.sort();
    addrs.dedup();
    Ok(addrs)
}

impl Inner {
    /// Queries every lookupd and connects to the union of what they report.
    /// If none answers, nothing changes: an unreachable lookupd says nothing
    /// about the nsqd.
    pub(super) async fn poll_lookupds(&self, pool: &HttpPool) {
        let lookupds = self.lookupds.lock().expect("lookupds lock").clone();
        let mut found: Option<Vec<String>> = None;
        for lookupd in &lookupds {
            match lookup(pool, lookupd, &self.topic).await {
                Ok(addrs) => found.get_or_insert_with(Vec::new).extend(addrs),
                Err(e) => tracing::warn!(error = %e, "lookupd query failed"),
            }
        }
        if let Some(mut addrs) = found {
            addrs.sort();
            addrs.dedup();
            self.set_lookupd_targets(&addrs);
        }
    }
}

/// Polls every `lookupd_poll_interval`, after a random initial delay so that
/// many consumers started together do not poll in step; a lost connection
/// triggers an early poll.
pub(super) async fn poll_loop(inner: Arc<Inner>, pool: HttpPool) {
    let interval = inner.config.lookupd_poll_interval;
    let jitter = interval.mul_f64(inner.config.lookupd_poll_jitter * rand::random::<f64>());
    tokio::select! {
        _ = tokio::time::sleep(jitter) => {}
        _ = inner.shutdown.cancelled() => return,
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = inner.repoll.notified() => {
                // Let a restarting nsqd deregister or reappear first.
                tokio::time::sleep(Duration::from_millis(50).min(interval)).await;
            }
            _ = inner.shutdown.cancelled() => return,
        }
        inner.poll_lookupds(&pool).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve(body: &'static str, status: u16) -> String {
        use axum::http::StatusCode;
        let app = axum::Router::new().route(
            "/lookup",
            axum::routing::get(move |headers: axum::http::HeaderMap| async move {
                assert_eq!(headers["accept"], crate::api::ACCEPT_V1);
                (StatusCode::from_u16(status).unwrap(), body)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr.to_string()
    }

    #[tokio::test]
    async fn reads_both_lookup_formats() {
        let client = http_pool(&Config::default()).unwrap();
        let v1 = serve(
            r#"{"channels":["c"],"producers":[{"broadcast_address":"b","tcp_port":4150,"http_port":4151},{"broadcast_address":"a","tcp_port":4150}]}"#,
            200,
        )
        .await;
        assert_eq!(
            lookup(&client, &v1, "t").await.unwrap(),
            vec!["a:4150", "b:4150"]
        );
        let old = serve(
            r#"{"status_code":200,"status_txt":"OK","data":{"producers":[{"broadcast_address":"c","tcp_port":1}]}}"#,
            200,
        )
        .await;
        assert_eq!(lookup(&client, &old, "t").await.unwrap(), vec!["c:1"]);
        let missing = serve(r#"{"message":"TOPIC_NOT_FOUND"}"#, 404).await;
        assert!(lookup(&client, &missing, "t").await.unwrap().is_empty());
        let broken = serve("oops", 500).await;
        assert!(lookup(&client, &broken, "t").await.is_err());
    }
}
