//! The `gazette` command: parse arguments, set up logging, hand over to `app`.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = gazette::app::Cli::parse();
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
