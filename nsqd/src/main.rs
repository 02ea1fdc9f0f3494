use nsq_daemon::logging::Logging;
use nsq_daemon::signals::run_until_stopped;
use nsqd::cli::CommandLine;
use nsqd::{LogLevel, Nsqd, VERSION};

fn main() {
    let (line, ignored_keys) =
        CommandLine::parse_from_os(std::env::args_os()).unwrap_or_else(|e| e.exit());
    if line.daemon.version {
        println!("nsqd v{VERSION} (rust)");
        return;
    }
    let format = line.daemon.log_format;
    let opts = line.into_options();
    let logging = Logging::init(opts.log_level, &opts.log_prefix, format);
    for key in ignored_keys {
        tracing::warn!(key, "config file key not recognised; ignored");
    }
    let hook = Box::new(move |level: LogLevel| logging.set_level(level));
    run_until_stopped(
        || Nsqd::start_with_log_hook(opts, Some(hook)),
        Nsqd::shutdown,
    )
}
