//! `neon-sim`: serves a recorded fixture on loopback as a Neon Companion would (HTTP API, status
//! WebSocket, RTSP, time echo), with fault injection. Prints one parseable line with its ports.

use std::io::Write;
use std::process::ExitCode;

use neon_sim::{self as sim, Cli};
use pipeline::cli;

fn main() -> ExitCode {
    let args = match cli::parse_or_exit::<Cli>("neon-sim") {
        Ok(a) => a,
        Err(code) => return code,
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("neon-sim: error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        match sim::start(args.cfg).await {
            Ok(handle) => {
                if let Some(e) = &handle.facts.trailing_error {
                    eprintln!("neon-sim: warning: serving the complete records only: {e}");
                }
                println!("{}", handle.ports_line());
                let _ = std::io::stdout().flush();
                let _ = tokio::signal::ctrl_c().await;
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("neon-sim: error: {}", cli::one_line(&e.to_string()));
                ExitCode::FAILURE
            }
        }
    })
}
