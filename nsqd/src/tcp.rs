//! The TCP listener (or unix socket): accepts connections and hands each to
//! protocol V2.

use crate::node::Node;
use crate::protocol_v2::{serve_connection, Remote};
use nsq_daemon::tcp::{serve_tcp, Listener};
use std::sync::Arc;

pub async fn serve(node: Arc<Node>, listener: Listener) {
    let shutdown = node.shutdown_token();
    let max_connections = node.opts.max_tcp_connections;
    match listener {
        Listener::Tcp(tcp) => {
            serve_tcp(tcp, shutdown, max_connections, move |stream, peer| {
                let remote = Remote {
                    address: peer.to_string(),
                    host: peer.ip().to_string(),
                };
                serve_connection(node.clone(), nsq::transport::split(stream), remote)
            })
            .await
        }
        Listener::Unix(unix) => {
            serve_tcp(unix, shutdown, max_connections, move |stream, peer| {
                // Go names an unnamed unix peer "@", and finds no host in it.
                let remote = Remote {
                    address: peer.to_string(),
                    host: String::new(),
                };
                serve_connection(node.clone(), nsq::transport::split_unix(stream), remote)
            })
            .await
        }
    }
}
