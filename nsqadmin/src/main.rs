use nsq_daemon::flags::try_parse;
use nsq_daemon::signals::run_until_stopped;
use nsq_daemon::version_line;
use nsqadmin::{CommandLine, NsqAdmin};

fn main() {
    let (line, parsed) = try_parse::<CommandLine>(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let opts = line.options;
    let version = version_line("nsqadmin");
    let logging = line
        .daemon
        .begin(&version, opts.log_level, &opts.log_prefix, parsed);
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
