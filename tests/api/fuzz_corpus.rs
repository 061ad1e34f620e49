//! The fuzz targets' seed and regression corpora (`fuzz/corpus/TARGET/`), replayed through
//! the same checks the libFuzzer targets run (`fuzz/checks.rs`), on the stable toolchain in
//! every `cargo test`, then a bounded mutation run of each target: a fixed number of
//! inputs made from the seeds by libFuzzer's kinds of mutation (bit flips, byte and
//! "interesting value" writes, inserts, erasures, copies, splices of two seeds). It is not
//! coverage-guided; libFuzzer is, in `fuzz/ci.sh` and the long campaigns (README,
//! "Fuzzing"). `TINBAO_FUZZ_RUNS` sets the count per target (default 4,000) and
//! `TINBAO_FUZZ_SEED` the seed (default fixed, so a failure repeats); a panicking input is
//! written to `fuzz/artifacts/TARGET/` and named in the failure.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::path::Path;

/// Runs `check` on every file of `fuzz/corpus/TARGET`, naming the file that panics; then
/// on mutations of them. `scale` divides the mutation count (a slow target runs fewer).
fn replay(target: &str, check: fn(&[u8]), scale: u64) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{target} has seeds");
    let mut seeds = Vec::with_capacity(files.len());
    for file in files {
        let data = std::fs::read(&file).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} panicked", file.display());
        seeds.push(data);
    }
    mutate_and_check(target, check, &seeds, scale);
}

/// A small, fast, reproducible generator (xorshift64*): test scaffolding, not crypto.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values that break parsers more often than random bytes do.
const INTERESTING: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\x7f",
    b"\x80",
    b"0",
    b"-1",
    b"99999999999999999999",
    b"1e999",
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"%",
    b"%ff",
    b"&",
    b"=",
    b"+",
    b"\r\n",
    b"\r\n\r\n",
    b"--",
    "đ".as_bytes(),
    "\u{202e}".as_bytes(),
    &[0xf0, 0x9f],
];

/// One mutation of `data`, in place, drawing on `seeds` for splices.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, seeds: &[Vec<u8>]) {
    const MAX_LEN: usize = 64 * 1024;
    let at = |rng: &mut Rng, data: &Vec<u8>| rng.below(data.len() + 1);
    match rng.below(8) {
        0 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] ^= 1 << rng.below(8);
        }
        1 if !data.is_empty() => {
            let i = rng.below(data.len());
            data[i] = rng.next() as u8;
        }
        2 => {
            let i = at(rng, data);
            let v = INTERESTING[rng.below(INTERESTING.len())];
            data.splice(i..i, v.iter().copied());
        }
        3 if !data.is_empty() => {
            let i = rng.below(data.len());
            let n = 1 + rng.below((data.len() - i).min(64));
            data.drain(i..i + n);
        }
        4 if !data.is_empty() => {
            let from = rng.below(data.len());
            let n = 1 + rng.below((data.len() - from).min(256));
            let chunk = data[from..from + n].to_vec();
            let i = at(rng, data);
            data.splice(i..i, chunk);
        }
        5 => {
            let other = &seeds[rng.below(seeds.len())];
            if !other.is_empty() {
                let from = rng.below(other.len());
                let n = 1 + rng.below(other.len() - from);
                let i = at(rng, data);
                data.truncate(i);
                data.extend_from_slice(&other[from..from + n]);
            }
        }
        6 if !data.is_empty() => {
            let i = rng.below(data.len());
            let v = INTERESTING[rng.below(INTERESTING.len())];
            let end = (i + v.len()).min(data.len());
            data.splice(i..end, v.iter().copied());
        }
        _ => {
            let i = at(rng, data);
            data.truncate(i);
        }
    }
    data.truncate(MAX_LEN);
}

fn mutate_and_check(target: &str, check: fn(&[u8]), seeds: &[Vec<u8>], scale: u64) {
    let runs: u64 = std::env::var("TINBAO_FUZZ_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000)
        / scale;
    let seed: u64 = std::env::var("TINBAO_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x7469_6e62_616f);
    // Each target its own stream, never zero.
    let mut rng = Rng(seed
        ^ target.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        })
        | 1);
    // The first panic ends the run (its message is printed by the default hook, which
    // stays: the other tests of this binary share it).
    let mut failure = None;
    for run in 0..runs {
        let mut data = seeds[rng.below(seeds.len())].clone();
        for _ in 0..1 + rng.below(4) {
            mutate(&mut rng, &mut data, seeds);
        }
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            failure = Some((run, data));
            break;
        }
    }
    if let Some((run, data)) = failure {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/artifacts")
            .join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("mutation-{seed}-{run}"));
        std::fs::write(&file, &data).unwrap();
        panic!(
            "{target}: mutation {run} panicked; input in {}",
            file.display()
        );
    }
}

macro_rules! replay_tests {
    ($($target:ident / $scale:literal),+ $(,)?) => {$(
        #[test]
        fn $target() {
            replay(stringify!($target), checks::$target::check, $scale);
        }
    )+};
}

replay_tests!(
    telegram_webhook / 1,
    zalo_webhook / 1,
    twilio_webhook / 1,
    android_webhook / 1,
    tip_form_multipart / 1,
    sms_text / 1,
    chat_commands / 1,
    // Decoding a photo takes milliseconds, not microseconds.
    photo_decode / 8,
);
