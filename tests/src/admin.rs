//! nsqadmin's tests run against a small live cluster: nsqlookupd, one nsqd
//! registered with it, and nsqadmin reading it through the lookupd.

use crate::{eventually, http_request, options_with_lookupds, start_lookupd, start_nsqd};
use crate::{Conn, Nsqd, Reply};
use nsqadmin::{NsqAdmin, Options as AdminOptions};
use reqwest::Method;
use serde_json::Value;
use std::time::Duration;

/// nsqlookupd, one nsqd registered with it, and nsqadmin in lookupd mode.
pub struct AdminCluster {
    pub lookupd: nsqlookupd::Lookupd,
    pub nsqd: Nsqd,
    pub admin: NsqAdmin,
}

/// Options for a test nsqadmin: loopback, port 0, history sampled every 200 ms.
pub fn admin_options() -> AdminOptions {
    AdminOptions {
        http_address: "127.0.0.1:0".into(),
        history_interval: Duration::from_millis(200),
        ..AdminOptions::default()
    }
}

impl AdminCluster {
    pub async fn start(configure: impl FnOnce(&mut AdminOptions)) -> AdminCluster {
        let lookupd = start_lookupd().await;
        let nsqd = start_nsqd(options_with_lookupds(&[&lookupd])).await;
        let mut opts = admin_options();
        opts.nsqlookupd_http_addresses = vec![lookupd.http_addr().to_string()];
        configure(&mut opts);
        let admin = NsqAdmin::start(opts).await.expect("nsqadmin starts");
        AdminCluster {
            lookupd,
            nsqd,
            admin,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.admin.http_addr())
    }

    pub fn node(&self) -> String {
        self.nsqd.http_addr().expect("HTTP").to_string()
    }

    pub async fn get(&self, path: &str) -> Reply {
        http_request(&self.url(), Method::GET, path, bytes::Bytes::new()).await
    }

    pub async fn send(&self, method: Method, path: &str, body: Value) -> Reply {
        http_request(&self.url(), method, path, body.to_string().into()).await
    }

    /// Publishes `n` messages to `topic` and waits until lookupd knows it.
    pub async fn publish(&self, topic: &str, n: usize) {
        let mut conn = Conn::connect(&self.nsqd).await;
        for i in 0..n {
            conn.publish(topic, format!("message {i}").as_bytes()).await;
        }
        let lookupd = nsq::LookupdHttp::new(&self.lookupd.http_addr().to_string());
        eventually("lookupd knows the topic", || async {
            lookupd
                .lookup(topic)
                .await
                .is_ok_and(|l| !l.producers.is_empty())
        })
        .await;
    }

    pub async fn create_channel(&self, topic: &str, channel: &str) {
        create_channel(&self.node(), topic, channel).await;
    }
}

/// Creates `topic` and its `channel` through nsqd's HTTP API at `http_addr`.
pub async fn create_channel(http_addr: &str, topic: &str, channel: &str) {
    let api = nsq::NsqdHttp::new(http_addr);
    api.topic_action(nsq::TopicAction::Create, topic)
        .await
        .expect("topic created");
    api.channel_action(nsq::TopicAction::Create, topic, channel)
        .await
        .expect("channel created");
}

/// A receiver for nsqadmin's `--notification-http-endpoint`: its URL, and
/// every notification it got, in order.
pub async fn notification_sink() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Value>>>) {
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let sink = events.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |body: bytes::Bytes| {
            let sink = sink.clone();
            async move {
                let event: Value = serde_json::from_slice(&body).expect("JSON notification");
                sink.lock().unwrap().push(event);
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}/events", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (endpoint, events)
}
