//! One copy of each string many held things share: label names, most label
//! values and alert names repeat across thousands of signals in a storm, and
//! so do whole sets of label names (every alert of one kind has the same).
//!
//! The copies are [`ArcStr`]s: one pointer wide, with the length kept in
//! the allocation beside the count, where a `std::sync::Arc<str>` is a
//! pointer and a length. A held signal carries about ten of them (its id,
//! name, source, one per label value, its key in the engine's index), and
//! the set one per distinct string: 474 against 352 bytes per held signal
//! at a million (docs/performance.md, "Scaling curve").

use std::collections::HashSet;
use std::sync::Arc;

pub use arcstr::ArcStr;

/// Below this many strings a sweep is not worth its walk.
const SWEEP_FLOOR: usize = 4096;

/// Hands out shared copies of strings. Strings nobody holds any more are
/// dropped when the set has doubled since the last sweep, so a stream of
/// unique values (pod names) costs amortised O(1) per string and the set
/// stays within twice what is in use.
#[derive(Debug, Default)]
pub struct Interner {
    set: HashSet<ArcStr>,
    swept_at: usize,
    names: HashSet<Arc<[ArcStr]>>,
    names_swept_at: usize,
}

impl Interner {
    pub fn intern(&mut self, s: &str) -> ArcStr {
        if let Some(shared) = self.set.get(s) {
            return shared.clone();
        }
        // A literal (the empty string is one) has no count: never swept.
        sweep(&mut self.set, &mut self.swept_at, |a| {
            ArcStr::strong_count(a).is_none_or(|n| n > 1)
        });
        let shared = ArcStr::from(s);
        self.set.insert(shared.clone());
        shared
    }

    /// A shared copy of a sequence of names (each interned too). Swept as
    /// strings are: a stream of label sets each with names of its own (a
    /// hostile or broken source) cannot grow the set without bound.
    pub fn intern_names<'a>(&mut self, names: impl Iterator<Item = &'a String>) -> Arc<[ArcStr]> {
        let names: Vec<ArcStr> = names.map(|n| self.intern(n)).collect();
        if let Some(shared) = self.names.get(names.as_slice()) {
            return Arc::clone(shared);
        }
        sweep(&mut self.names, &mut self.names_swept_at, |a| {
            Arc::strong_count(a) > 1
        });
        let shared: Arc<[ArcStr]> = names.into();
        self.names.insert(Arc::clone(&shared));
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

/// Drops what only the set still holds, once it has doubled since the last
/// sweep.
fn sweep<T: Eq + std::hash::Hash>(
    set: &mut HashSet<T>,
    swept_at: &mut usize,
    held_elsewhere: impl Fn(&T) -> bool,
) {
    if set.len() >= 2 * (*swept_at).max(SWEEP_FLOOR) {
        set.retain(held_elsewhere);
        *swept_at = set.len();
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
        assert!(ArcStr::ptr_eq(&a, &b));
        assert_eq!(i.len(), 1);
    }

    #[test]
    fn a_shared_copy_is_one_pointer_wide() {
        assert_eq!(std::mem::size_of::<ArcStr>(), std::mem::size_of::<usize>());
    }

    #[test]
    fn strings_nobody_holds_are_swept_and_held_ones_kept() {
        let mut i = Interner::default();
        let kept = i.intern("kept");
        let empty = i.intern("");
        for n in 0..10 * SWEEP_FLOOR {
            drop(i.intern(&format!("pod-{n}")));
        }
        assert!(i.len() <= 2 * SWEEP_FLOOR + 2, "{}", i.len());
        assert!(ArcStr::ptr_eq(&kept, &i.intern("kept")));
        assert_eq!(i.intern(""), empty);
    }

    #[test]
    fn name_sets_are_shared_and_swept_like_strings() {
        let mut i = Interner::default();
        let names = ["alertname".to_string(), "zone".to_string()];
        let kept = i.intern_names(names.iter());
        assert!(Arc::ptr_eq(&kept, &i.intern_names(names.iter())));
        for n in 0..10 * SWEEP_FLOOR {
            let own = [format!("label_{n}")];
            drop(i.intern_names(own.iter()));
        }
        assert!(i.names.len() <= 2 * SWEEP_FLOOR + 1, "{}", i.names.len());
        assert!(Arc::ptr_eq(&kept, &i.intern_names(names.iter())));
    }
}
