//! The `tinbao` binary: a thin shell over the library.

/// mimalloc instead of glibc's allocator: glibc's malloc and free were a tenth of the
/// server's CPU time under intake load (issue 15).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = tinbao::cli::parse();
    // Before the runtime starts its threads, which inherit the priority.
    if cli.runs_beside_servers() {
        tinbao::cli::step_aside();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tinbao: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tinbao::cli::run_parsed(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tinbao: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
