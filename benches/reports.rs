//! Reports benchmark: `cargo bench --bench reports`. The console benchmark's program and
//! seed (1,000,000 tips, 200,000 of them in commune 70), measuring the monthly report as a
//! page and as `.xlsx`, and the province's view of the month (see `console.rs`).

#[path = "console.rs"]
mod console;

fn main() -> anyhow::Result<()> {
    console::main()
}
