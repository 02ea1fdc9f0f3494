//! The TCP listener: accepts connections and hands each to protocol V2.

use crate::node::Node;
use std::sync::Arc;
use tokio::net::TcpListener;

pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    let shutdown = node.shutdown_token();
    let max_connections = node.opts.max_tcp_connections;
    nsq_daemon::tcp::serve_tcp(listener, shutdown, max_connections, move |stream, peer| {
        crate::protocol_v2::serve_connection(node.clone(), stream, peer)
    })
    .await
}
