//! Batches of work on one thread: "kicks" (a system call that starts queued work, such as
//! `io_uring_enter` for queued submissions or a `sendmsg` of queued responses) deferred to the
//! end of a burst, so that a burst of commands costs one kick instead of one per command.
//!
//! The thread that handles a burst opens a [`Batch`] (a fabric's receive thread around the
//! commands of one socket read, the io_uring completion thread around one batch of
//! completions). Code that would kick something at once asks [`defer`] first: inside a batch the
//! kick is recorded (once per target, however many commands asked) and runs at [`flush`] or
//! when the outermost [`Batch`] ends; outside one, `defer` returns `false` and the caller kicks
//! at once, as before.
//!
//! The rule that makes it safe: **a thread flushes its batch before it waits for anything**
//! (a socket read that may block, a task management function, a lock another command may hold),
//! since what it waits for may sit behind a deferred kick. A batch is per thread and nothing
//! else ever runs its kicks.
//!
//! Steady state allocates nothing: the deferred kicks are a fixed array of `Arc`s (a clone is
//! one atomic increment); past [`MAX_DEFERRED`] distinct targets `defer` declines and the caller
//! kicks at once.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::Arc;

/// Something that starts work queued earlier on this thread (see the module documentation).
pub trait Kick: Send + Sync {
    /// Starts the queued work. Must not block; may queue and defer more (it runs again in the
    /// same flush).
    fn kick(&self);
}

/// Distinct kicks one batch holds at most.
pub const MAX_DEFERRED: usize = 16;

struct State {
    depth: u32,
    n: usize,
    kicks: [Option<Arc<dyn Kick>>; MAX_DEFERRED],
}

thread_local! {
    static STATE: RefCell<State> = const {
        RefCell::new(State { depth: 0, n: 0, kicks: [const { None }; MAX_DEFERRED] })
    };
}

/// An open batch on the current thread; the deferred kicks run when the outermost one is
/// dropped. Not `Send`: a batch belongs to its thread.
#[must_use = "the batch ends (and its kicks run) when this is dropped"]
#[derive(Debug)]
pub struct Batch {
    _thread: PhantomData<*const ()>,
}

/// Opens a batch on the current thread (nested batches end with the outermost).
pub fn begin() -> Batch {
    STATE.with_borrow_mut(|s| s.depth += 1);
    Batch { _thread: PhantomData }
}

impl Drop for Batch {
    fn drop(&mut self) {
        let last = STATE.with_borrow_mut(|s| {
            s.depth -= 1;
            s.depth == 0
        });
        if last {
            flush();
        }
    }
}

/// Whether the current thread is inside a batch.
pub fn active() -> bool {
    STATE.with_borrow(|s| s.depth > 0)
}

/// Records `kick` to run at the end of the current thread's batch. `false` when there is no
/// batch (or it is full): then the caller kicks now.
pub fn defer(kick: &Arc<dyn Kick>) -> bool {
    STATE.with_borrow_mut(|s| {
        if s.depth == 0 {
            return false;
        }
        let same = |k: &Option<Arc<dyn Kick>>| {
            k.as_ref().is_some_and(|k| std::ptr::addr_eq(Arc::as_ptr(k), Arc::as_ptr(kick)))
        };
        if s.kicks[..s.n].iter().any(same) {
            return true;
        }
        if s.n == MAX_DEFERRED {
            return false;
        }
        s.kicks[s.n] = Some(kick.clone());
        s.n += 1;
        true
    })
}

/// Runs the kicks deferred so far on this thread (the batch stays open). Call it before
/// waiting for anything.
pub fn flush() {
    crate::stats::forget_receipt_time();
    loop {
        let mut taken: [Option<Arc<dyn Kick>>; MAX_DEFERRED] = [const { None }; MAX_DEFERRED];
        let n = STATE.with_borrow_mut(|s| {
            let n = s.n;
            for (t, k) in taken.iter_mut().zip(s.kicks[..n].iter_mut()) {
                *t = k.take();
            }
            s.n = 0;
            n
        });
        if n == 0 {
            return;
        }
        // Outside the borrow: a kick may defer again (into the emptied list).
        for k in taken.iter().take(n).flatten() {
            k.kick();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

    #[derive(Default)]
    struct Count(AtomicU32);
    impl Kick for Count {
        fn kick(&self) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    fn counter() -> (Arc<Count>, Arc<dyn Kick>) {
        let c = Arc::new(Count::default());
        let k: Arc<dyn Kick> = c.clone();
        (c, k)
    }

    #[test]
    fn outside_a_batch_the_caller_kicks() {
        let (c, k) = counter();
        assert!(!active());
        assert!(!defer(&k));
        flush();
        assert_eq!(c.0.load(Relaxed), 0);
    }

    #[test]
    fn a_batch_kicks_each_target_once_at_its_end() {
        let (a, ka) = counter();
        let (b, kb) = counter();
        {
            let _g = begin();
            for _ in 0..10 {
                assert!(defer(&ka));
            }
            assert!(defer(&kb));
            {
                let _inner = begin();
                assert!(defer(&ka));
            }
            // The inner batch ended, the outer one is still open.
            assert_eq!(a.0.load(Relaxed), 0);
        }
        assert_eq!((a.0.load(Relaxed), b.0.load(Relaxed)), (1, 1));
        assert!(!active());
    }

    #[test]
    fn flush_runs_the_kicks_and_keeps_the_batch_open() {
        let (a, ka) = counter();
        let _g = begin();
        assert!(defer(&ka));
        flush();
        assert_eq!(a.0.load(Relaxed), 1);
        assert!(defer(&ka));
        drop(_g);
        assert_eq!(a.0.load(Relaxed), 2);
    }

    #[test]
    fn a_full_batch_declines() {
        let ks: Vec<_> = (0..=MAX_DEFERRED).map(|_| counter()).collect();
        let _g = begin();
        for (_, k) in &ks[..MAX_DEFERRED] {
            assert!(defer(k));
        }
        assert!(!defer(&ks[MAX_DEFERRED].1));
        drop(_g);
        assert!(ks[..MAX_DEFERRED].iter().all(|(c, _)| c.0.load(Relaxed) == 1));
        assert_eq!(ks[MAX_DEFERRED].0.0.load(Relaxed), 0);
    }

    /// A kick that defers another while it runs: the flush runs that one too.
    struct Chain(Arc<dyn Kick>);
    impl Kick for Chain {
        fn kick(&self) {
            assert!(defer(&self.0));
        }
    }

    #[test]
    fn kicks_deferred_by_a_kick_run_in_the_same_flush() {
        let (a, ka) = counter();
        let chain: Arc<dyn Kick> = Arc::new(Chain(ka));
        let _g = begin();
        assert!(defer(&chain));
        flush();
        assert_eq!(a.0.load(Relaxed), 1);
    }
}
