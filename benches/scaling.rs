//! The rule engine's scaling curve with the shipped rules and catalogue:
//! what one new alert costs, and how much memory the engine holds per
//! signal, at 10,000, 100,000 and 1,000,000 signals held.
//!
//! The alerts are the storm's correlated kind (`KubePodNotReady` with a
//! region, a zone, one of 50 services, a namespace, a unique pod and a
//! severity), every one new, so each is held by both service-failure
//! rules' groups (the per-group member bound is lifted for it). Memory is counted by a global allocator that tracks live
//! bytes: exact and repeatable, unlike RSS on a shared machine; the
//! process's RSS is printed beside it. Time per alert is measured on one
//! engine per size, filled to it, with their batches interleaved: the
//! median of the [`BATCHES`] batches at each size, with their quartiles
//! (noise on a shared 2-core box; the ratio between sizes is the result).
//!
//!   cargo bench --bench scaling                  # 10k, 100k, 1M
//!   SCALING_SIZES=10000,100000 cargo bench --bench scaling

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use chrono::{DateTime, Utc};
use dr_reactor::rules::engine::EngineLimits;
use dr_reactor::rules::{Engine, RuleSet};
use dr_reactor::signal::{Change, Labels, Signal, SignalEvent, Status};

/// Batches timed at each size, and alerts per batch: 5,000 alerts in all,
/// so the 10,000 point is measured between 10,000 and 15,000 held.
const BATCHES: usize = 25;
const PER_BATCH: usize = 200;

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the
// counter only observes sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SERVICES: usize = 50;

fn alert(i: usize, at: DateTime<Utc>) -> SignalEvent {
    let labels: Labels = [
        ("alertname", "KubePodNotReady".to_owned()),
        ("region", "ap-northeast-2".to_owned()),
        ("zone", format!("ap-northeast-2{}", ["a", "b", "c"][i % 3])),
        ("service", format!("svc-{}", i % SERVICES)),
        ("namespace", "prod".to_owned()),
        ("pod", format!("pod-{i}")),
        ("severity", "warning".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    SignalEvent {
        signal: Signal {
            source: "alertmanager".into(),
            fingerprint: format!("{i:016x}"),
            name: "KubePodNotReady".into(),
            labels,
            annotations: Labels::new(),
            status: Status::Firing,
            starts_at: at,
            ends_at: None,
            received_at: at,
        },
        change: Change::Fired,
    }
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let rules = RuleSet::load(
        &[root.join("rules")],
        Some(root.join("config/services.yaml").as_path()),
    )
    .unwrap_or_else(|e| panic!("shipped rules: {e}"));
    let sizes: Vec<usize> = std::env::var("SCALING_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("SCALING_SIZES: numbers"))
        .collect();
    let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    // The default per-group bound (10,000) would turn most of a million
    // away: raised, so that the curve measures holding them.
    let rules = Arc::new(rules);
    let new_engine = || {
        Engine::new(Arc::clone(&rules)).with_limits(EngineLimits {
            max_members_per_group: usize::MAX,
            ..EngineLimits::default()
        })
    };
    // The alerts are built outside the measured spans, and dropped before
    // memory is read, so only what the engine keeps counts.
    let feed = |engine: &mut Engine, from: usize, to: usize| {
        let mut fed = from;
        while fed < to {
            let n = (to - fed).min(10_000);
            let batch: Vec<SignalEvent> = (fed..fed + n).map(|i| alert(i, t0)).collect();
            for ev in &batch {
                engine.on_event(ev, t0);
            }
            fed += n;
        }
    };

    // Memory: one engine, grown through the sizes.
    println!(
        "{:>10} {:>14} {:>10} {:>14}",
        "held", "engine bytes", "B/signal", "process RSS"
    );
    let mut engine = new_engine();
    let base = LIVE.load(Ordering::Relaxed);
    let mut fed = 0;
    for &size in &sizes {
        feed(&mut engine, fed, size);
        fed = size;
        let held = LIVE.load(Ordering::Relaxed).saturating_sub(base);
        println!(
            "{:>10} {:>14} {:>10} {:>10.0} MiB",
            size,
            held,
            held / size,
            rss_mib()
        );
    }
    println!(
        "signals held by the engine at the end: {} ({} group memberships)",
        engine.signals_tracked(),
        engine.tracked()
    );
    drop(engine);

    // Time: one engine per size, their batches interleaved, so that the
    // machine's slower and faster spells fall on every size alike. One
    // engine measured at each size in turn gave ratios between sizes from
    // 1.08x to 1.76x, run to run, for the same build.
    let mut engines: Vec<(Engine, usize, Vec<f64>)> = sizes
        .iter()
        .map(|&size| {
            let mut engine = new_engine();
            feed(&mut engine, 0, size);
            (engine, size, Vec::with_capacity(BATCHES))
        })
        .collect();
    for _ in 0..BATCHES {
        for (engine, fed, per_alert) in &mut engines {
            let batch: Vec<SignalEvent> = (*fed..*fed + PER_BATCH).map(|i| alert(i, t0)).collect();
            let start = Instant::now();
            for ev in &batch {
                engine.on_event(ev, t0);
            }
            per_alert.push(start.elapsed().as_secs_f64() * 1e6 / PER_BATCH as f64);
            *fed += PER_BATCH;
        }
    }
    println!("{:>10} {:>12} {:>15}", "held", "µs/alert", "quartiles");
    let mut medians = Vec::new();
    for ((_, _, mut per_alert), size) in engines.into_iter().zip(&sizes) {
        per_alert.sort_by(f64::total_cmp);
        let at = |q: usize| per_alert[(per_alert.len() - 1) * q / 4];
        println!(
            "{:>10} {:>12.2} {:>15}",
            size,
            at(2),
            format!("{:.2}–{:.2}", at(1), at(3))
        );
        medians.push(at(2));
    }
    let (lo, hi) = medians
        .iter()
        .fold((f64::MAX, 0f64), |(lo, hi), &m| (lo.min(m), hi.max(m)));
    println!("largest / smallest cost per alert: {:.2}x", hi / lo);
}
