//! `elock`: `elock serve` runs the lock server; every other command is a client of it.

use clap::Parser;
use elock::cli;

/// mimalloc rather than glibc's malloc: the server allocates and frees many small buffers per
/// request (JSON, headers, leases) from several threads, where glibc's arenas spent about 15% of
/// the server's CPU under load (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    // A usage error exits 64 (sysexits' EX_USAGE), never 2: 2 is "not granted" for the lock
    // commands, and a wrapped tool's own code for `elock run`.
    let args = match cli::Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { 64 } else { 0 });
        }
    };
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
