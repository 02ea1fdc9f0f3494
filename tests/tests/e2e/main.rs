//! The end-to-end tests: real daemons on loopback, real clients, one module
//! per area. They are one test binary, not one per file: each binary links
//! the whole workspace, and 37 of them took minutes to link and gigabytes of
//! disk (enough to fill a CI machine's). nextest still runs every test in a
//! process of its own; `cargo nextest run -p nsq-e2e -E 'test(/^crash::/)'`
//! runs one module.

mod browser;

mod auth;
mod client;
mod cluster;
mod compat_pynsq;
mod compat_tokio_nsq;
mod crash;
mod dead_letters;
mod durability;
mod hostile;
mod http_clients;
mod logging;
mod lookup_registration;
mod metrics;
mod nsqadmin;
mod nsqadmin_api;
mod nsqadmin_browser;
mod nsqadmin_dead;
mod nsqadmin_replication;
mod nsqd_http_pub;
mod nsqd_http_routes;
mod nsqd_http_stats;
mod nsqd_http_topics;
mod nsqd_tcp;
mod nsqd_tcp_commands;
mod nsqd_tcp_delivery;
mod nsqlookupd;
mod partition;
mod replication;
mod replication_failover;
mod replication_partition;
mod statsd;
mod tls;
mod tools;
mod tools_peek;
mod tools_relay;
mod unix_socket;
