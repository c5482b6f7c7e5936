//! The `taskbox` binary: parse the command line, send logs to stderr, run the command.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = taskbox::cli::Cli::parse();
    init_logging(cli.verbose);
    match taskbox::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("taskbox: {e:#}");
            match e.downcast_ref::<taskbox::cli::Exiting>() {
                Some(exiting) => ExitCode::from(exiting.code),
                None => ExitCode::FAILURE,
            }
        }
    }
}

/// Logs go to stderr only: on stdio, stdout belongs to the MCP protocol.
fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "taskbox=info,warn",
        1 => "taskbox=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("TASKBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
}
