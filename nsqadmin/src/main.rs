use nsq_daemon::logging::Logging;
use nsq_daemon::signals::run_until_stopped;
use nsqadmin::cli::CommandLine;
use nsqadmin::{NsqAdmin, VERSION};

fn main() {
    let (line, ignored_keys) =
        CommandLine::parse_from_os(std::env::args_os()).unwrap_or_else(|e| e.exit());
    if line.daemon.version {
        println!("nsqadmin v{VERSION} (rust)");
        return;
    }
    let format = line.daemon.log_format;
    let opts = line.options;
    let logging = Logging::init(opts.log_level, &opts.log_prefix, format);
    for key in ignored_keys {
        tracing::warn!(key, "config file key not recognised; ignored");
    }
    if let Err(e) = opts.validate() {
        tracing::error!("{e}");
        std::process::exit(1);
    }
    let hook = Box::new(move |level| logging.set_level(level));
    run_until_stopped(
        || NsqAdmin::start_with_log_hook(opts, Some(hook)),
        NsqAdmin::shutdown,
    )
}
