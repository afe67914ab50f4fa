//! `kiorexctl`: what hospital IT runs on a host to install and operate Kiorex.

mod up;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "kiorexctl",
    version,
    about = "Install and operate the Kiorex hospital information platform."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run Kiorex on this machine alone (single-node mode) with a local PostgreSQL, demo data and
    /// a demo administrator. Stops everything on Ctrl-C; data stays in the data directory.
    Up(up::UpArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up::run(args),
    };
    if let Err(e) = result {
        eprintln!("kiorexctl: {e:#}");
        std::process::exit(1);
    }
}
