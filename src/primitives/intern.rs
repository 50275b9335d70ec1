//! One copy of each string many held things share: label names, most label
//! values and alert names repeat across thousands of signals in a storm.

use std::collections::HashSet;
use std::sync::Arc;

/// Below this many strings a sweep is not worth its walk.
const SWEEP_FLOOR: usize = 4096;

/// Hands out shared copies of strings. Strings nobody holds any more are
/// dropped when the set has doubled since the last sweep, so a stream of
/// unique values (pod names) costs amortised O(1) per string and the set
/// stays within twice what is in use.
#[derive(Debug, Default)]
pub struct Interner {
    set: HashSet<Arc<str>>,
    swept_at: usize,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.set.get(s) {
            return Arc::clone(shared);
        }
        if self.set.len() >= 2 * self.swept_at.max(SWEEP_FLOOR) {
            self.set.retain(|a| Arc::strong_count(a) > 1);
            self.swept_at = self.set.len();
        }
        let shared: Arc<str> = Arc::from(s);
        self.set.insert(Arc::clone(&shared));
        shared
    }

    /// Distinct strings in the set (some may be awaiting the next sweep).
    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy() {
        let mut i = Interner::default();
        let a = i.intern("ap-northeast-2");
        let b = i.intern("ap-northeast-2");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn strings_nobody_holds_are_swept_and_held_ones_kept() {
        let mut i = Interner::default();
        let kept = i.intern("kept");
        for n in 0..10 * SWEEP_FLOOR {
            drop(i.intern(&format!("pod-{n}")));
        }
        assert!(i.len() <= 2 * SWEEP_FLOOR + 1, "{}", i.len());
        assert!(Arc::ptr_eq(&kept, &i.intern("kept")));
    }
}
