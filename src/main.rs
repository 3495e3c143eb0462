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
    // One thread runs every task and polls the sockets itself. On a multi-threaded
    // runtime the main thread's `block_on` polls the work but a worker thread polls the
    // sockets, so every reply from the relay woke one thread to wake another (a third
    // of a send's system time), and the relay waited meanwhile. What needs more cores
    // has threads of its own: DKIM signing, the SQLite connections, the import's parser.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
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
