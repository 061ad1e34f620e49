//! Memory under photo uploads (issue 15): `cargo bench --bench uploads`.
//!
//! Starts `tinbao serve` (SQLite, abuse limits off, defaults otherwise) and sends
//! `BENCH_UPLOADS` (16) tip forms at once, each with five photos of just under 10 MiB
//! (12-megapixel JPEGs of noise: the largest a phone sends that the form takes), while a
//! steady 50 text tips/s go to the same form. It reports the server's peak VmRSS (sampled
//! every 100 ms) and VmHWM against < 1 GB, how every upload was answered (stored, or
//! "busy, send again" 503 after `photo_upload_wait_seconds`), and the text tips' latency
//! beside the uploads against the same tips' alone.

#[path = "common/procstat.rs"]
mod procstat;
#[path = "common/server.rs"]
mod server;

use anyhow::Result;
use hdrhistogram::Histogram;
use image::codecs::jpeg::JpegEncoder;
use reqwest::multipart::{Form, Part};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const PHOTO_MAX: usize = 10 * 1024 * 1024;
const TARGET_KB: u64 = 1024 * 1024;

/// A noisy 4000×3000 JPEG just under 10 MiB (quality lowered until it fits).
fn big_photo(seed: u64) -> Vec<u8> {
    let (w, h) = (4000u32, 3000u32);
    let mut x = seed | 1;
    let mut pixels = vec![0u8; (w * h * 3) as usize];
    for p in pixels.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *p = (x >> 24) as u8;
    }
    for quality in (40..=95).rev().step_by(5) {
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, quality)
            .encode(&pixels, w, h, image::ExtendedColorType::Rgb8)
            .expect("encode");
        if out.len() < PHOTO_MAX - 64 * 1024 {
            return out;
        }
    }
    panic!("no quality makes the photo small enough");
}

fn text_form(i: u64) -> Form {
    Form::new()
        .text("category", "dealing")
        .text("province", "1")
        .text("commune", "70")
        .text(
            "description",
            format!("Có người bán ma tuý ở quán nước đầu ngõ, lần {i}"),
        )
        .text("action", "submit")
}

/// Text tips at 50/s for `for_how_long`; their latency.
async fn text_tips(base: String, for_how_long: Duration) -> (Histogram<u64>, u64) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let mut hist = Histogram::<u64>::new(3).expect("histogram");
    let mut failed = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let end = Instant::now() + for_how_long;
    let mut i = 0;
    while Instant::now() < end {
        tick.tick().await;
        i += 1;
        let t = Instant::now();
        let ok = client
            .post(format!("{base}/tips"))
            .multipart(text_form(i))
            .send()
            .await
            .is_ok_and(|r| r.status().is_redirection());
        let _ = hist.record(t.elapsed().as_micros().max(1) as u64);
        if !ok {
            failed += 1;
        }
    }
    (hist, failed)
}

fn ms(us: u64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

#[tokio::main]
async fn main() -> Result<()> {
    let uploads: usize = std::env::var("BENCH_UPLOADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_tinbao"));
    println!("making five photos of just under 10 MiB…");
    let photos: Vec<Vec<u8>> = (1..=5).map(big_photo).collect();
    println!(
        "  {} bytes each",
        photos
            .iter()
            .map(|p| p.len().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let data = tempfile::tempdir()?;
    let srv = server::Server::start(&bin, data.path(), None, &[]).await?;
    let base = format!("http://{}", srv.addr);
    let sampler = procstat::RssSampler::start(srv.pid());

    let (alone, alone_failed) = text_tips(base.clone(), Duration::from_secs(5)).await;
    println!(
        "text tips alone: p50 {} · p99 {} · max {} ms, {alone_failed} not stored",
        ms(alone.value_at_quantile(0.5)),
        ms(alone.value_at_quantile(0.99)),
        ms(alone.max())
    );
    let rss_before = sampler.take_peak();

    let started = Instant::now();
    let mut tasks = Vec::new();
    for u in 0..uploads {
        let base = base.clone();
        let photos = photos.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(300))
                .build()
                .expect("client");
            let mut form = text_form(1_000_000 + u as u64);
            for (i, p) in photos.into_iter().enumerate() {
                form = form.part(
                    "photos",
                    Part::bytes(p)
                        .file_name(format!("IMG_{u}_{i}.jpg"))
                        .mime_str("image/jpeg")
                        .expect("mime"),
                );
            }
            let t = Instant::now();
            let status = client
                .post(format!("{base}/tips"))
                .multipart(form)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or_else(|e| {
                    eprintln!("  upload {u}: {e:?}");
                    0
                });
            (status, t.elapsed())
        }));
    }
    let text = tokio::spawn(text_tips(base.clone(), Duration::from_secs(20)));
    let mut answers = std::collections::BTreeMap::<u16, Vec<Duration>>::new();
    for t in tasks {
        let (status, took) = t.await?;
        answers.entry(status).or_default().push(took);
    }
    let uploads_took = started.elapsed();
    let (beside, beside_failed) = text.await?;
    let peak = sampler.take_peak().max(rss_before);
    let hwm = procstat::proc_status_kb(srv.pid(), "VmHWM:").unwrap_or(0);
    sampler.stop();
    srv.stop().await;

    println!(
        "{uploads} uploads of 5 photos ({:.1} s in all):",
        uploads_took.as_secs_f64()
    );
    for (status, times) in &answers {
        let what = match status {
            303 => "stored (303 to the receipt)",
            503 => "busy, send again (503)",
            0 => "no answer",
            _ => "other",
        };
        let slowest = times.iter().max().copied().unwrap_or_default();
        println!(
            "  {status} {what}: {} (slowest {:.1} s)",
            times.len(),
            slowest.as_secs_f64()
        );
    }
    println!(
        "text tips beside them: p50 {} · p99 {} · max {} ms, {beside_failed} not stored",
        ms(beside.value_at_quantile(0.5)),
        ms(beside.value_at_quantile(0.99)),
        ms(beside.max())
    );
    let worst = peak.max(hwm);
    println!(
        "server memory: peak VmRSS {:.0} MB, VmHWM {:.0} MB (target < 1024 MB) [{}]",
        peak as f64 / 1024.0,
        hwm as f64 / 1024.0,
        if worst < TARGET_KB { "ok" } else { "MISS" }
    );
    Ok(())
}
