use nsq_daemon::logging::Logging;
use nsq_daemon::signals::run_until_stopped;
use nsqlookupd::cli::CommandLine;
use nsqlookupd::{Lookupd, VERSION};

fn main() {
    let (line, ignored_keys) =
        CommandLine::parse_from_os(std::env::args_os()).unwrap_or_else(|e| e.exit());
    if line.daemon.version {
        println!("nsqlookupd v{VERSION} (rust)");
        return;
    }
    let format = line.daemon.log_format;
    let opts = line.options;
    let _logging = Logging::init(opts.log_level, &opts.log_prefix, format);
    for key in ignored_keys {
        tracing::warn!(key, "config file key not recognised; ignored");
    }
    run_until_stopped(|| Lookupd::start(opts), Lookupd::shutdown)
}
