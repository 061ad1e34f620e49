//! Process measurements shared by the benchmarks: RSS and CPU of the server under load,
//! read from /proc.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the sampler reads the server's RSS.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Clock ticks per second in /proc (USER_HZ on Linux).
pub const CLK_TCK: f64 = 100.0;

pub fn proc_status_kb(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Samples the child's VmRSS on its own thread; `take_peak` returns and resets the peak.
pub struct RssSampler {
    pub peak_kb: Arc<AtomicU64>,
    pub stop: Arc<AtomicBool>,
    pub thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let peak_kb = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let peak_kb = peak_kb.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if let Some(kb) = proc_status_kb(pid, "VmRSS:") {
                        peak_kb.fetch_max(kb, Ordering::Relaxed);
                    }
                    std::thread::sleep(SAMPLE_EVERY);
                }
            })
        };
        RssSampler {
            peak_kb,
            stop,
            thread: Mutex::new(Some(thread)),
        }
    }

    pub fn take_peak(&self) -> u64 {
        self.peak_kb.swap(0, Ordering::Relaxed)
    }

    pub fn stop(&self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.lock().expect("sampler lock").take() {
            let _ = t.join();
        }
        self.take_peak()
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop();
    }
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// (busy, total) clock ticks of the whole machine, from the first line of `/proc/stat`.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3)? + f.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

pub struct CpuSnapshot {
    pub at: Instant,
    pub server: u64,
    pub client: u64,
    pub machine: (u64, u64),
}

pub struct CpuUse {
    pub server_pct: f64,
    pub client_pct: f64,
    /// Busy share of all cores (server, client, PostgreSQL and anything else).
    pub machine_pct: f64,
}

impl CpuSnapshot {
    pub fn take(pid: u32) -> CpuSnapshot {
        CpuSnapshot {
            at: Instant::now(),
            server: cpu_ticks(&pid.to_string()).unwrap_or(0),
            client: cpu_ticks("self").unwrap_or(0),
            machine: machine_ticks().unwrap_or((0, 0)),
        }
    }

    pub fn since(&self, pid: u32) -> CpuUse {
        let now = CpuSnapshot::take(pid);
        let secs = (now.at - self.at).as_secs_f64().max(1e-9);
        let pct = |a: u64, b: u64| (b.saturating_sub(a)) as f64 / CLK_TCK / secs * 100.0;
        CpuUse {
            server_pct: pct(self.server, now.server),
            client_pct: pct(self.client, now.client),
            machine_pct: (now.machine.0.saturating_sub(self.machine.0)) as f64
                / (now.machine.1.saturating_sub(self.machine.1)).max(1) as f64
                * 100.0,
        }
    }
}
