//! The `gazette` command: parse arguments, set up logging, hand over to `app`.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = gazette::app::Cli::parse();
    if !cli.command.is_daemon() {
        // Rust ignores SIGPIPE, so printing into a closed pipe (`gazette status |
        // head -1`) would panic. A command that prints ends quietly instead, as `ls`
        // does. The daemons keep ignoring it: they write to sockets, not to a reader.
        // SAFETY: no other thread exists yet, and SIG_DFL is a valid disposition.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    gazette::app::init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(gazette::app::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
