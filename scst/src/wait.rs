//! Completions collected by the thread that started the I/O, while it waits for its next input.
//!
//! A fabric thread that reads its transport (an iSCSI connection's socket, say) and starts block
//! I/O from there may declare, with [`enable`], that it waits for input only through
//! [`wait_readable`]. A store that completes asynchronously (FILEIO/BLOCKIO through io_uring)
//! then starts that thread's I/O where the thread itself can collect it ([`register`]), and
//! [`wait_readable`] waits for the transport *and* those completions at once: a finished read is
//! completed and its response sent by the thread that received the command, with no hand-off to
//! another thread and no second wake-up (the kernel completes io_uring reads and writes in the
//! context of the task that submitted them, so a completion thread of its own costs the
//! submitter a wake-up anyway).
//!
//! The promise a thread makes with [`enable`]: before any wait that may block (a socket read, a
//! lock another command may hold) it calls [`wait_readable`] for the descriptor it is about to
//! read, and it never waits for a command of its own to complete anywhere else. A thread that
//! never calls [`enable`] sees no change: stores use their shared completion threads.
//!
//! The core knows nothing of the sources (it holds them as [`LocalCompletions`]); one thread has
//! at most one registered source.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::os::fd::RawFd;
use std::rc::Rc;

/// I/O a store started on the current thread and completes there (see the module docs).
pub trait LocalCompletions {
    /// Whether I/O started on this thread has not completed yet.
    fn pending(&self) -> bool;
    /// Waits until `fd` is readable (or has an error or hang-up) or nothing is pending,
    /// completing finished I/O meanwhile (its responses go out through the thread's batch,
    /// which it flushes before each wait).
    fn wait_readable(&self, fd: RawFd);
    /// Waits for and completes everything still pending.
    fn drain(&self);
}

#[derive(Default)]
struct Local {
    enabled: bool,
    source: Option<Rc<dyn LocalCompletions>>,
}

thread_local! {
    static LOCAL: RefCell<Local> = RefCell::new(Local::default());
}

/// The current thread waits only through [`wait_readable`] until this is dropped; dropping it
/// completes what is still pending (waiting for it) and ends the promise. Not `Send`.
#[must_use = "the promise ends (and pending I/O is drained) when this is dropped"]
#[derive(Debug)]
pub struct Enabled {
    _thread: PhantomData<*const ()>,
}

/// Declares that the current thread waits for input only through [`wait_readable`].
pub fn enable() -> Enabled {
    LOCAL.with_borrow_mut(|l| l.enabled = true);
    Enabled { _thread: PhantomData }
}

impl Drop for Enabled {
    fn drop(&mut self) {
        let source = LOCAL.with_borrow_mut(|l| {
            l.enabled = false;
            l.source.take()
        });
        if let Some(s) = source {
            s.drain();
        }
    }
}

/// Whether the current thread made the [`enable`] promise (a store may then [`register`]).
pub fn enabled() -> bool {
    LOCAL.with_borrow(|l| l.enabled)
}

/// Makes `source` the current thread's source: `true` when it is (now or already), `false`
/// when the thread made no promise or another source is registered (then the store must not
/// start I/O that only `source` would complete).
pub fn register<T: LocalCompletions + 'static>(source: &Rc<T>) -> bool {
    LOCAL.with_borrow_mut(|l| {
        if !l.enabled {
            return false;
        }
        match &l.source {
            Some(s) => std::ptr::addr_eq(Rc::as_ptr(s), Rc::as_ptr(source)),
            None => {
                l.source = Some(source.clone());
                true
            }
        }
    })
}

/// Waits until `fd` is readable or the thread has no I/O of its own pending, completing that
/// I/O meanwhile. Returns at once on a thread without a source or with nothing pending, so the
/// caller's read that follows waits as it always did.
pub fn wait_readable(fd: RawFd) {
    // Cloned out: completing a command may start another one, which reaches the source again.
    let Some(s) = LOCAL.with_borrow(|l| l.source.clone()) else { return };
    if s.pending() {
        s.wait_readable(fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    struct Fake {
        pending: Cell<u32>,
        drained: Rc<Cell<bool>>,
    }

    impl LocalCompletions for Fake {
        fn pending(&self) -> bool {
            self.pending.get() > 0
        }
        fn wait_readable(&self, _fd: RawFd) {
            self.pending.set(self.pending.get() - 1);
        }
        fn drain(&self) {
            self.drained.set(true);
        }
    }

    #[test]
    fn register_needs_the_promise_and_drop_drains() {
        let drained = Rc::new(Cell::new(false));
        let fake = || Rc::new(Fake { pending: Cell::new(2), drained: drained.clone() });
        assert!(!register(&fake()), "a thread that made no promise gets no source");
        let g = enable();
        assert!(enabled());
        let f = fake();
        assert!(register(&f));
        assert!(register(&f), "registering the same source again keeps it");
        assert!(!register(&fake()), "one source per thread");
        wait_readable(0);
        wait_readable(0);
        wait_readable(0);
        assert_eq!(f.pending.get(), 0, "waits only while something is pending");
        drop(g);
        assert!(drained.get(), "the end of the promise drains the source");
        assert!(!enabled());
        assert!(LOCAL.with_borrow(|l| l.source.is_none()), "the source is gone with the promise");
    }
}
