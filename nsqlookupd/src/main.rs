use nsq::daemon::{Logging, StopSignals};
use nsqlookupd::cli::Args;
use nsqlookupd::{Lookupd, VERSION};

fn main() {
    let (args, ignored_keys) =
        Args::parse_from_os(std::env::args_os()).unwrap_or_else(|e| e.exit());
    if args.version {
        println!("nsqlookupd v{VERSION} (rust)");
        return;
    }
    let format = args.log_format;
    let opts = args.into_options();
    let _logging = Logging::init(opts.log_level, &opts.log_prefix, format);
    for key in ignored_keys {
        tracing::warn!(key, "config file key not recognised; ignored");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(async move {
        let mut stop = StopSignals::install();
        let lookupd = match Lookupd::start(opts).await {
            Ok(lookupd) => lookupd,
            Err(e) => {
                tracing::error!(error = %e, "failed to start");
                return 1;
            }
        };
        stop.recv().await;
        lookupd.shutdown().await;
        0
    });
    std::process::exit(code);
}
