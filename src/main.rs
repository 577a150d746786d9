//! `lecal`: recipes → plan → train → CSV → tables. See `lecal --help`.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = lecal::cli::Cli::parse();
    match lecal::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // A closed pipe (`lecal plan … | head`) is not an error.
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

// Training allocates and frees many tensors of the same few sizes every step; glibc's
// allocator returns large ones to the kernel each time (page faults, system time),
// mimalloc keeps them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
