//! The `tinbao` binary: a thin shell over the library.

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
