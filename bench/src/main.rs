//! `kiorex-bench`: fills a Kiorex server with synthetic patients (`load`) and
//! measures the throughput and latency of its FHIR API (`run`).

mod api;
mod cli;
mod documents;
mod edge;
mod frontdesk;
mod load;
mod portal;
mod report;
mod run;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;
use kiorex_synth::Synth;

use crate::cli::{Cli, Command, SampleArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Load(args) => load::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Documents(args) => documents::run(args).await,
        Command::Frontdesk(args) => frontdesk::run(args).await,
        Command::Portal(args) => portal::run(args).await,
        Command::Sample(args) => sample(&args),
        Command::Edge(args) => edge::run(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Prints a bundle; a closed pipe (e.g. `| head`) is not an error.
fn sample(args: &SampleArgs) -> anyhow::Result<()> {
    let bundle = Synth::new(args.seed).patient_bundle(args.patients, args.records);
    match writeln!(io::stdout(), "{bundle:#}") {
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        result => Ok(result?),
    }
}
