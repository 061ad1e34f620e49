//! The fuzz targets' seed and regression corpora (`fuzz/corpus/TARGET/`), replayed through
//! the same checks the libFuzzer targets run (`fuzz/checks.rs`), on the stable toolchain in
//! every `cargo test`. libFuzzer itself runs in `fuzz/ci.sh` and long campaigns (README,
//! "Fuzzing"); this keeps every input that ever mattered, crashes found included, tested.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// Runs `check` on every file of `fuzz/corpus/TARGET`, naming the file that panics.
fn replay(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{target} has seeds");
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} panicked", file.display());
    }
}

macro_rules! replay_tests {
    ($($target:ident),+ $(,)?) => {$(
        #[test]
        fn $target() {
            replay(stringify!($target), checks::$target::check);
        }
    )+};
}

replay_tests!(
    telegram_webhook,
    zalo_webhook,
    twilio_webhook,
    android_webhook,
    tip_form_multipart,
    sms_text,
    chat_commands,
    photo_decode,
);
