//! The rule engine's scaling curve with the shipped rules and catalogue:
//! what one new alert costs, and how much memory the engine holds per
//! signal, at 10,000, 100,000 and 1,000,000 signals held.
//!
//! The alerts are the storm's correlated kind (`KubePodNotReady` with a
//! region, a zone, one of 50 services, a namespace, a unique pod and a
//! severity), every one new, so each is held by both service-failure
//! rules' groups (the per-group member bound is lifted for it). Memory is counted by a global allocator that tracks live
//! bytes: exact and repeatable, unlike RSS on a shared machine; the
//! process's RSS is printed beside it. Time per alert is the median of
//! the batches of 1,000 fed after each size was reached (noise on a
//! shared 2-core box; the ratio between sizes is the result).
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
    let mut engine = Engine::new(Arc::new(rules)).with_limits(EngineLimits {
        max_members_per_group: usize::MAX,
        ..EngineLimits::default()
    });
    let base = LIVE.load(Ordering::Relaxed);
    let mut fed = 0usize;
    println!(
        "{:>10} {:>12} {:>14} {:>10} {:>14}",
        "held", "µs/alert", "engine bytes", "B/signal", "process RSS"
    );
    for &size in &sizes {
        // The alerts are built outside the measured span, and dropped
        // before memory is read, so only what the engine keeps counts.
        while fed < size {
            let n = (size - fed).min(10_000);
            let batch: Vec<SignalEvent> = (fed..fed + n).map(|i| alert(i, t0)).collect();
            for ev in &batch {
                engine.on_event(ev, t0);
            }
            fed += n;
        }
        let held = LIVE.load(Ordering::Relaxed).saturating_sub(base);
        let mut per_alert = Vec::new();
        for _ in 0..5 {
            let batch: Vec<SignalEvent> = (fed..fed + 1_000).map(|i| alert(i, t0)).collect();
            let start = Instant::now();
            for ev in &batch {
                engine.on_event(ev, t0);
            }
            per_alert.push(start.elapsed().as_secs_f64() * 1e6 / 1_000.0);
            fed += 1_000;
        }
        per_alert.sort_by(f64::total_cmp);
        println!(
            "{:>10} {:>12.2} {:>14} {:>10} {:>10.0} MiB",
            size,
            per_alert[per_alert.len() / 2],
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
}
