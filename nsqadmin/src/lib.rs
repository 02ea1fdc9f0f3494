//! nsqadmin: the web UI over an NSQ cluster. It reads the topology from
//! nsqlookupd (or a fixed list of nsqd), gathers every node's stats
//! concurrently, serves upstream's `/api` and server-rendered pages, keeps a
//! short history for charts, and forwards admin actions to the nodes.

mod admin;
mod assets;
mod charts;
mod cidr;
mod cli;
mod cluster;
mod ctx;
mod graphite;
mod history;
mod messages;
mod model;
mod notify;
mod options;
mod pages;
mod replication;
mod server;
mod views;

pub use admin::{NsqAdmin, StartError};
pub use cli::CommandLine;
pub use options::Options;
