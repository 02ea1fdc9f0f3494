use nsq_daemon::flags::try_parse;
use nsq_daemon::signals::run_until_stopped;
use nsqadmin::cli::CommandLine;
use nsqadmin::{NsqAdmin, VERSION};

fn main() {
    let (line, parsed) = try_parse::<CommandLine>(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let opts = line.options;
    let version = format!("nsqadmin v{VERSION} (rust)");
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
