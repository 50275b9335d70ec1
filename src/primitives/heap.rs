//! Gives memory the heap no longer uses back to the system.
//!
//! glibc's malloc keeps what is freed inside its heaps mapped, and frees
//! back to the system only from the top of each one. A storm leaves such
//! holes everywhere (request bodies, parsed alerts, batches waiting for the
//! rule engine, all freed once handled), so the process kept about 18 MiB
//! more than it used after 100,000 alerts (measured with the memory bench,
//! see docs/performance.md). `malloc_trim` returns the free pages inside
//! the heaps too. It walks every arena under its lock, so it runs only
//! when enough is free to be worth a walk, and at most once per interval.
//!
//! The interval is short because the work that follows a storm allocates
//! too (incidents, plans, notifications): with a 10 s interval the process
//! stood 12 MiB above what it used for 8 s after the engine had caught up
//! with 100,000 alerts. The pages a trim gives back during a storm are
//! faulted in again; the storm bench, alternating this build with the
//! 10 s one, showed no difference in rate beyond its noise.

use std::time::Duration;

/// How often the free memory is looked at.
const EVERY: Duration = Duration::from_secs(2);

/// Free bytes inside the heap below which a trim is not worth its walk.
const WORTH: usize = 4 << 20;

/// Runs until cancelled.
pub async fn trim_periodically() {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // The walk holds the allocator's locks for a few milliseconds: off
        // the runtime's worker threads.
        let _ = tokio::task::spawn_blocking(trim_if_worth).await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_if_worth() {
    // SAFETY: both calls only read or rearrange the allocator's own state,
    // under its own locks; nothing of ours is touched.
    let free = unsafe { libc::mallinfo2() }.fordblks;
    if free >= WORTH {
        unsafe { libc::malloc_trim(0) };
    }
}

/// Other allocators (musl's, macOS's) return memory on their own terms.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_if_worth() {}
