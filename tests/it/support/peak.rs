//! A child process's own peak RSS.
//!
//! Linux charges a process, when it execs, with the peak RSS of the memory it was
//! spawned from: `ru_maxrss` from `wait4` on a child of a big process (a test binary
//! whose other tests hold their data, the benchmark after it built its messages) is at
//! least that process's peak, whatever the child itself used. GNU time is small: the
//! command runs as its child, and it writes that child's own peak to a file.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// GNU time, from Debian's `time` package (`.ci/install-deps`).
const TIME: &str = "/usr/bin/time";

/// `program` run under GNU time, which writes its peak RSS to `report` when it exits.
/// Arguments, environment, folder and output are set on the returned command as usual;
/// read the peak with [`read_kib`] once it has exited. Its exit status is the program's.
pub fn command(program: impl AsRef<OsStr>, report: &Path) -> Command {
    assert!(
        Path::new(TIME).exists(),
        "{TIME} is missing: install Debian's time package (.ci/install-deps)"
    );
    let mut command = Command::new(TIME);
    command
        .args(["--format", "%M", "--output"])
        .arg(report)
        .arg("--")
        .arg(program);
    command
}

/// The peak RSS in KiB that GNU time wrote to `report`.
pub fn read_kib(report: &Path) -> u64 {
    let text = std::fs::read_to_string(report)
        .unwrap_or_else(|e| panic!("reading {}: {e}", report.display()));
    // A program killed by a signal gets a "Command terminated by signal" line first.
    let last = text.lines().last().unwrap_or_default().trim();
    last.parse()
        .unwrap_or_else(|_| panic!("{}: not a peak RSS in KiB: {text:?}", report.display()))
}

/// A file for GNU time's report in `dir`, named after `label`.
pub fn report_file(dir: &Path, label: &str) -> PathBuf {
    dir.join(format!("{label}.peak-rss"))
}
