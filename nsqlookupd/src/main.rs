use nsq_daemon::flags::try_parse;
use nsq_daemon::signals::run_until_stopped;
use nsq_daemon::version_line;
use nsqlookupd::{CommandLine, Lookupd};

fn main() {
    let (line, parsed) = try_parse::<CommandLine>(std::env::args_os()).unwrap_or_else(|e| e.exit());
    let opts = line.options;
    let version = version_line("nsqlookupd");
    let _logging = line
        .daemon
        .begin(&version, opts.log_level, &opts.log_prefix, parsed);
    run_until_stopped(|| Lookupd::start(opts), Lookupd::shutdown)
}
