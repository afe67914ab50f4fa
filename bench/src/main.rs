//! `kiorex-bench`: fills a Kiorex server with synthetic patients (`load`) and
//! measures the throughput and latency of its FHIR API (`run`).

mod api;
mod cli;
mod load;
mod report;
mod run;

use std::process::ExitCode;

use clap::Parser;
use kiorex_synth::Synth;

use crate::cli::{Cli, Command, SampleArgs};

#[tokio::main]
async fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Load(args) => load::run(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Sample(args) => sample(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn sample(args: &SampleArgs) -> anyhow::Result<()> {
    let bundle = Synth::new(args.seed).patient_bundle(args.patients, args.records);
    println!("{bundle:#}");
    Ok(())
}
