//! Long-lived tasks that outlive their own panics.
//!
//! A panic in a spawned task ends only that task, silently: the rest of the
//! process goes on as if it were running (the webhook answers 2xx, the lease
//! is renewed) while nothing is decided. A supervised task is started again
//! instead, after a pause that grows while it keeps failing, and each panic
//! is logged and counted. What a task needs to resume (its inputs, its
//! state in the store) must outlive one attempt: `make` is called for each.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;

/// Whether a supervised task is running now (false between a panic and its
/// restart, and once it has returned).
#[derive(Clone, Debug)]
pub struct Running(Arc<AtomicBool>);

impl Running {
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// First pause before a restart, doubled per consecutive panic up to
/// [`MAX_PAUSE`]; a task that ran for a minute starts again from the first.
const FIRST_PAUSE: Duration = Duration::from_millis(100);
const MAX_PAUSE: Duration = Duration::from_secs(10);
const HEALTHY_AFTER: Duration = Duration::from_secs(60);

/// Runs `make()` on its own task until it returns, starting it again after
/// each panic. `restarts` counts the panics (one series per task). The
/// handle ends when the task returns or is cancelled.
pub fn spawn<F, Fut>(
    task: &'static str,
    restarts: prometheus::IntCounter,
    mut make: F,
) -> (JoinHandle<()>, Running)
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let running = Running(Arc::new(AtomicBool::new(true)));
    let flag = running.clone();
    let handle = tokio::spawn(async move {
        let mut pause = FIRST_PAUSE;
        loop {
            flag.0.store(true, Ordering::Relaxed);
            let started = tokio::time::Instant::now();
            let outcome = tokio::spawn(make()).await;
            flag.0.store(false, Ordering::Relaxed);
            match outcome {
                Ok(()) => return,
                Err(e) if e.is_panic() => {
                    restarts.inc();
                    if started.elapsed() >= HEALTHY_AFTER {
                        pause = FIRST_PAUSE;
                    }
                    tracing::error!(task, restart_in = ?pause, "task panicked: {}; restarting it", message(e.into_panic()));
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                // Cancelled: the runtime is shutting down.
                Err(_) => return,
            }
        }
    });
    (handle, running)
}

fn message(panic: Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[tokio::test]
    async fn a_panicking_task_is_restarted_and_counted_until_it_returns() {
        let restarts = prometheus::IntCounter::new("r", "r").unwrap();
        let attempts = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&attempts);
        let (handle, running) = spawn("test", restarts.clone(), move || {
            let seen = Arc::clone(&seen);
            async move {
                if seen.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("boom");
                }
            }
        });
        handle.await.unwrap();
        assert_eq!(attempts.load(Ordering::SeqCst), 3);
        assert_eq!(restarts.get(), 2);
        assert!(!running.get(), "returned: not running");
    }
}
