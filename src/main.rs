//! `lecal`: recipes → plan → train → CSV → tables. See `lecal --help`.

use clap::Parser;
use std::process::ExitCode;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e`; the Rust bindings lack it.
const MI_OPTION_PURGE_DELAY: std::os::raw::c_int = 15;

fn main() -> ExitCode {
    // Never hand freed memory back to the kernel (mimalloc's default is after 10 ms): a
    // training step frees and reallocates the same large buffers, and each return cost
    // page faults and zeroing (ResNet20 train step: 111 -> 121 img/s on 2 cores).
    // SAFETY: sets a plain integer option; mimalloc allows it at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
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
