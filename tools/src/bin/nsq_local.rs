//! A whole NSQ cluster for development in one process: nsqlookupd, nsqd
//! registered with it, and nsqadmin watching them, on the usual ports with
//! data under the working directory. Ctrl-C (or SIGTERM) stops all three
//! cleanly: nsqadmin, then nsqd (which saves its queues and leaves lookupd),
//! then lookupd.

use clap::Parser;
use nsq_daemon::logging::LogLevel;
use nsq_daemon::logging::{LogFormat, Logging};
use nsq_daemon::signals::StopSignals;
use nsq_daemon::version_line;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "nsq_local",
    about = "Runs nsqlookupd, nsqd and nsqadmin in one process for local development"
)]
struct Opts {
    /// first of the ports to use: lookupd N (TCP) and N+1 (HTTP), nsqd N+10
    /// and N+11, nsqadmin N+21; default: the usual ports (lookupd 4160/4161,
    /// nsqd 4150/4151, nsqadmin 4171)
    #[arg(long)]
    ports_from: Option<u16>,
    /// directory for nsqd's queues and metadata
    #[arg(long, default_value = "nsq-data")]
    data_path: PathBuf,
    /// address to listen on; other machines can reach the cluster only if
    /// this is not loopback
    #[arg(long, default_value = "127.0.0.1")]
    listen_address: String,
    /// log level: debug, info, warn, error or fatal
    #[arg(long, default_value = "info")]
    log_level: LogLevel,
    /// print version string
    #[arg(long)]
    version: bool,
}

/// The five listening ports.
struct Ports {
    lookupd_tcp: u16,
    lookupd_http: u16,
    nsqd_tcp: u16,
    nsqd_http: u16,
    admin_http: u16,
}

impl Ports {
    fn new(from: Option<u16>) -> Result<Ports, String> {
        let Some(n) = from else {
            return Ok(Ports {
                lookupd_tcp: 4160,
                lookupd_http: 4161,
                nsqd_tcp: 4150,
                nsqd_http: 4151,
                admin_http: 4171,
            });
        };
        let at = |offset: u16| {
            n.checked_add(offset)
                .ok_or_else(|| format!("--ports-from={n} leaves no room for port N+{offset}"))
        };
        Ok(Ports {
            lookupd_tcp: at(0)?,
            lookupd_http: at(1)?,
            nsqd_tcp: at(10)?,
            nsqd_http: at(11)?,
            admin_http: at(21)?,
        })
    }
}

fn main() {
    let opts = nsq_daemon::flags::parse::<Opts>(std::env::args_os());
    if opts.version {
        println!("{}", version_line("nsq_local"));
        return;
    }
    let ports = Ports::new(opts.ports_from).unwrap_or_else(|e| {
        eprintln!("nsq_local: {e}");
        std::process::exit(2)
    });
    let _logging = Logging::init(opts.log_level, "[nsq_local] ", LogFormat::Text);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(run(opts, ports));
    std::process::exit(code);
}

async fn run(opts: Opts, ports: Ports) -> i32 {
    let mut stop = StopSignals::install();
    let host = opts.listen_address.as_str();
    let listen = |port: u16| match host.contains(':') {
        true => format!("[{host}]:{port}"),
        false => format!("{host}:{port}"),
    };
    // Announce an address that consumers can dial: the listen address
    // itself, unless it is a wildcard.
    let broadcast = match host {
        "0.0.0.0" | "::" | "" => nsq_daemon::flags::hostname(),
        _ => host.to_string(),
    };
    let lookupd = match nsqlookupd::Lookupd::start(nsqlookupd::Options {
        log_level: opts.log_level,
        tcp_address: listen(ports.lookupd_tcp),
        http_address: listen(ports.lookupd_http),
        broadcast_address: broadcast.clone(),
        ..nsqlookupd::Options::default()
    })
    .await
    {
        Ok(lookupd) => lookupd,
        Err(e) => {
            failed_to_start("nsqlookupd", &e);
            return 1;
        }
    };
    let nsqd = match nsqd::Nsqd::start(nsqd::Options {
        log_level: opts.log_level,
        tcp_address: listen(ports.nsqd_tcp),
        http_address: listen(ports.nsqd_http),
        broadcast_address: broadcast,
        nsqlookupd_tcp_addresses: vec![lookupd.tcp_addr().to_string()],
        data_path: opts.data_path.clone(),
        ..nsqd::Options::default()
    })
    .await
    {
        Ok(nsqd) => nsqd,
        Err(e) => {
            failed_to_start("nsqd", &e);
            lookupd.shutdown().await;
            return 1;
        }
    };
    let admin = match nsqadmin::NsqAdmin::start(nsqadmin::Options {
        log_level: opts.log_level,
        http_address: listen(ports.admin_http),
        nsqlookupd_http_addresses: vec![lookupd.http_addr().to_string()],
        ..nsqadmin::Options::default()
    })
    .await
    {
        Ok(admin) => admin,
        Err(e) => {
            failed_to_start("nsqadmin", &e);
            nsqd.shutdown().await;
            lookupd.shutdown().await;
            return 1;
        }
    };
    let nsqd_http = nsqd.http_addr().expect("nsqd HTTP is enabled");
    println!(
        "{}",
        banner(
            Addresses {
                nsqd_tcp: nsqd.tcp_addr(),
                nsqd_http,
                lookupd_tcp: lookupd.tcp_addr(),
                lookupd_http: lookupd.http_addr(),
                admin_http: admin.http_addr(),
            },
            &std::path::absolute(&opts.data_path).unwrap_or(opts.data_path),
        )
    );

    stop.recv().await;
    admin.shutdown().await;
    nsqd.shutdown().await;
    lookupd.shutdown().await;
    0
}

/// Logs why a daemon did not start, with a way out when its port is taken.
fn failed_to_start(daemon: &str, error: &(dyn std::error::Error + 'static)) {
    tracing::error!(error = %error, "{daemon} failed to start");
    if port_taken(error) {
        tracing::error!(
            "a port is taken (another NSQ running?); pick free ones with --ports-from=N, \
             which uses N and N+1 (nsqlookupd), N+10 and N+11 (nsqd), N+21 (nsqadmin)"
        );
    }
}

/// Whether "address in use" is somewhere in the chain of `error`.
fn port_taken(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::AddrInUse)
        {
            return true;
        }
        cause = e.source();
    }
    false
}

/// Where the three daemons listen.
struct Addresses {
    nsqd_tcp: SocketAddr,
    nsqd_http: SocketAddr,
    lookupd_tcp: SocketAddr,
    lookupd_http: SocketAddr,
    admin_http: SocketAddr,
}

/// What a newcomer needs: where everything is and how to try it.
fn banner(a: Addresses, data: &std::path::Path) -> String {
    let Addresses {
        nsqd_tcp,
        nsqd_http,
        lookupd_tcp,
        lookupd_http,
        admin_http,
    } = a;
    format!(
        "\
NSQ is running (nsqlookupd, nsqd and nsqadmin in this process).

  nsqd        TCP {nsqd_tcp}  HTTP http://{nsqd_http}
  nsqlookupd  TCP {lookupd_tcp}  HTTP http://{lookupd_http}
  nsqadmin    http://{admin_http}  (open it in a browser)
  data        {data}

Publish a message:
  curl -d 'hello world' 'http://{nsqd_http}/pub?topic=test'
Read it back:
  nsq_tail --lookupd-http-address={lookupd_http} --topic=test

Ctrl-C stops the cluster.",
        data = data.display()
    )
}
