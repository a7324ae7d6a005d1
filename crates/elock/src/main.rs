//! `elock`: `elock serve` runs the lock server; every other command is a client of it.

mod cli;
mod config;
mod migration;
mod server;

use clap::Parser;

fn main() {
    let args = cli::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("elock: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(cli::run(args));
    std::process::exit(code);
}
