use nsq::daemon::{Logging, StopSignals};
use nsqd::cli::Args;
use nsqd::{LogLevel, Nsqd, VERSION};

fn main() {
    let (args, ignored_keys) =
        Args::parse_from_os(std::env::args_os()).unwrap_or_else(|e| e.exit());
    if args.version {
        println!("nsqd v{VERSION} (rust)");
        return;
    }
    let format = args.log_format;
    let opts = args.into_options();
    let logging = Logging::init(opts.log_level, &opts.log_prefix, format);
    for key in ignored_keys {
        tracing::warn!(key, "config file key not recognised; ignored");
    }
    let hook = Box::new(move |level: LogLevel| logging.set_level(level));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(async move {
        let mut stop = StopSignals::install();
        let nsqd = match Nsqd::start_with_log_hook(opts, Some(hook)).await {
            Ok(nsqd) => nsqd,
            Err(e) => {
                tracing::error!(error = %e, "failed to start");
                return 1;
            }
        };
        stop.recv().await;
        nsqd.shutdown().await;
        0
    });
    std::process::exit(code);
}
