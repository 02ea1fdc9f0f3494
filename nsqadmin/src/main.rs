use nsq::daemon::{Logging, StopSignals};
use nsqadmin::cli::Args;
use nsqadmin::{NsqAdmin, VERSION};
use std::sync::Arc;

fn main() {
    let (args, ignored_keys) =
        Args::parse_from_os(std::env::args_os()).unwrap_or_else(|e| e.exit());
    if args.version {
        println!("nsqadmin v{VERSION} (rust)");
        return;
    }
    let format = args.log_format;
    let opts = args.into_options();
    let logging = Arc::new(Logging::init(opts.log_level, &opts.log_prefix, format));
    for key in ignored_keys {
        tracing::warn!(key, "config file key not recognised; ignored");
    }
    if let Err(e) = opts.validate() {
        tracing::error!("{e}");
        std::process::exit(1);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let code = runtime.block_on(async move {
        let mut stop = StopSignals::install();
        let hook_logging = logging.clone();
        let hook = Box::new(move |level| hook_logging.set_level(level));
        let admin = match NsqAdmin::start_with_log_hook(opts, Some(hook)).await {
            Ok(admin) => admin,
            Err(e) => {
                tracing::error!(error = %e, "failed to start");
                return 1;
            }
        };
        stop.recv().await;
        admin.shutdown().await;
        0
    });
    std::process::exit(code);
}
