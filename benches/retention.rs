//! Retention benchmark: `cargo bench --bench retention`. The console benchmark's program and
//! seed (1,000,000 tips, about 85 % closed over the past year), then, with `tinbao serve`
//! taking 500 tips/s over HTTP: intake alone for 5 s; `tinbao retention run` with 8
//! months' retention (about 300,000 tips due: their content destroyed, then the rest of
//! the closed tips wrapped under their destruction day's key); `tinbao backup` of the
//! whole database. Intake's p99 against < 50 ms during each, the destruction's rate
//! against >= 10,000 tips/s (see `console.rs`).

#[path = "console.rs"]
mod console;

fn main() -> anyhow::Result<()> {
    console::main()
}
