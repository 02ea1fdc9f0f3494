//! The open-files limit of a daemon's process.
//!
//! Go programs raise their soft limit on open files to the hard limit at
//! start (since Go 1.19), so upstream's nsqd serves ten thousand consumers
//! under a service manager's usual soft limit of 1,024. Ours does the same,
//! or it would refuse connections (and, in log mode, topics) where
//! upstream's did not.

use std::io;

/// The soft and hard limits on open files, as `getrlimit` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFiles {
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft limit on open files to the hard limit; returns the
/// limits from before.
pub fn raise_open_files() -> io::Result<OpenFiles> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let before = OpenFiles {
        soft: limit.rlim_cur,
        hard: limit.rlim_max,
    };
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(before)
}
