//! The `kumo` binary; everything lives in the kumo_cli library.

use clap::Parser;

fn main() {
    let cli = kumo_cli::cli::Cli::parse();
    if let Err(err) = kumo_cli::run(cli) {
        eprintln!("{}", kumo_cli::format_error(&err));
        std::process::exit(1);
    }
}
