//! nsqadmin: the web UI over an NSQ cluster. It reads the topology from
//! nsqlookupd (or a fixed list of nsqd), gathers every node's stats
//! concurrently, serves upstream's `/api` and server-rendered pages, keeps a
//! short history for charts, and forwards admin actions to the nodes.

mod admin;
mod assets;
mod charts;
mod cidr;
pub mod cli;
pub mod cluster;
mod graphite;
pub mod history;
pub mod model;
mod notify;
pub mod options;
mod pages;
mod peek;
mod server;
pub mod views;

pub use admin::{NsqAdmin, StartError};
pub use notify::AdminAction;
pub use options::Options;
