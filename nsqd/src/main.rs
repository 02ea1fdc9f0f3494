use nsq_daemon::flags::try_parse;
use nsq_daemon::logging::LogLevel;
use nsq_daemon::signals::run_until_stopped;
use nsq_daemon::version_line;
use nsqd::{CommandLine, Nsqd};

fn main() {
    let (line, parsed) = try_parse::<CommandLine>(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let daemon = line.daemon.clone();
    let opts = line.into_options();
    let version = version_line("nsqd");
    let logging = daemon.begin(&version, opts.log_level, &opts.log_prefix, parsed);
    let hook = Box::new(move |level: LogLevel| logging.set_level(level));
    run_until_stopped(
        || Nsqd::start_with_log_hook(opts, Some(hook)),
        Nsqd::shutdown,
    )
}
