//! The `tinbao` binary: a thin shell over the library.

/// mimalloc instead of glibc's allocator: glibc's malloc and free were a tenth of the
/// server's CPU time under intake load (issue 15).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match tinbao::cli::run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tinbao: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
