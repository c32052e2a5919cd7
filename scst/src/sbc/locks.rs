//! LBA range locks: COMPARE AND WRITE, ORWRITE and WRITE ATOMIC are atomic against every other
//! write to an overlapping range, from any session, while writes to other ranges go on.
//!
//! Reads and writes take a range shared; the atomic commands take it exclusively. A READ whose
//! data leaves from the page cache by reference (a zero-copy READ, [`crate::Cmd::data_in_file`])
//! holds its range against writes until the initiator has the bytes ([`Mode::Hold`]): until then
//! a write to the file would change what goes on the wire. A lock is an entry in a small table
//! under one mutex (held only to scan and update the table, never during I/O); the table's
//! capacity is kept, so steady-state writes do not allocate.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// How a range is held.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Mode {
    /// A read: coexists with everything but [`Mode::Exclusive`].
    Read,
    /// A write: coexists with reads and writes, not with [`Mode::Hold`] or [`Mode::Exclusive`].
    Write,
    /// A READ's data still referenced from the page cache: no write may change it.
    Hold,
    /// An atomic command: alone on its range.
    Exclusive,
}

impl Mode {
    fn conflicts(self, other: Self) -> bool {
        use Mode::{Exclusive, Hold, Write};
        matches!((self, other), (Exclusive, _) | (_, Exclusive) | (Hold, Write) | (Write, Hold))
    }
}

#[derive(Clone, Copy)]
struct Entry {
    start: u64,
    end: u64,
    mode: Mode,
    id: u64,
}

/// The range lock table of one device.
#[derive(Default)]
pub(super) struct RangeLocks {
    table: Mutex<(Vec<Entry>, u64)>,
    freed: Condvar,
}

/// A held range; dropping it releases the range.
pub(super) struct RangeGuard<'a> {
    locks: &'a RangeLocks,
    id: u64,
}

impl RangeLocks {
    /// Locks blocks `[lba, lba + blocks)`, waiting while a conflicting range is held. May block:
    /// only called where the command may block (or for an instant on a non-blocking store, whose
    /// holders never block while holding).
    pub(super) fn lock(&self, lba: u64, blocks: u64, mode: Mode) -> RangeGuard<'_> {
        let (start, end) = (lba, lba.saturating_add(blocks.max(1)));
        let mut g = self.table.lock();
        while busy(&g.0, start, end, mode) {
            self.freed.wait(&mut g);
        }
        g.1 = g.1.wrapping_add(1);
        let id = g.1;
        g.0.push(Entry { start, end, mode, id });
        RangeGuard { locks: self, id }
    }
}

impl RangeLocks {
    /// Locks blocks `[lba, lba + blocks)` if no conflicting range is held; never waits.
    pub(super) fn try_lock(&self, lba: u64, blocks: u64, mode: Mode) -> Option<RangeGuard<'_>> {
        let (start, end) = (lba, lba.saturating_add(blocks.max(1)));
        let mut g = self.table.lock();
        if busy(&g.0, start, end, mode) {
            return None;
        }
        g.1 = g.1.wrapping_add(1);
        let id = g.1;
        g.0.push(Entry { start, end, mode, id });
        Some(RangeGuard { locks: self, id })
    }
}

/// A held range that owns its table: it travels with an asynchronous I/O
/// ([`crate::store::BlockIo`]) and is released when that completes.
pub(crate) struct OwnedRangeGuard {
    locks: Arc<RangeLocks>,
    id: u64,
}

impl RangeLocks {
    /// Like [`RangeLocks::try_lock`], with a guard that can outlive the borrow.
    pub(super) fn try_lock_owned(self: &Arc<Self>, lba: u64, blocks: u64, mode: Mode) -> Option<OwnedRangeGuard> {
        let g = self.try_lock(lba, blocks, mode)?;
        let id = g.id;
        std::mem::forget(g);
        Some(OwnedRangeGuard { locks: self.clone(), id })
    }

    fn unlock(&self, id: u64) {
        let mut g = self.table.lock();
        if let Some(i) = g.0.iter().position(|e| e.id == id) {
            g.0.swap_remove(i);
        }
        drop(g);
        self.freed.notify_all();
    }
}

/// Whether `[start, end)` in `mode` conflicts with a held range.
fn busy(table: &[Entry], start: u64, end: u64, mode: Mode) -> bool {
    table.iter().any(|e| e.start < end && start < e.end && mode.conflicts(e.mode))
}

impl Drop for RangeGuard<'_> {
    fn drop(&mut self) {
        self.locks.unlock(self.id);
    }
}

impl Drop for OwnedRangeGuard {
    fn drop(&mut self) {
        self.locks.unlock(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::time::Duration;

    #[test]
    fn shared_ranges_coexist_and_exclusive_waits() {
        let l = Arc::new(RangeLocks::default());
        let a = l.lock(0, 8, Mode::Write);
        let _b = l.lock(4, 8, Mode::Read); // overlapping shared: fine
        let _c = l.lock(100, 1, Mode::Exclusive); // disjoint exclusive: fine
        let got = Arc::new(AtomicBool::new(false));
        let (l2, g2) = (l.clone(), got.clone());
        let t = std::thread::spawn(move || {
            let _x = l2.lock(7, 2, Mode::Exclusive);
            g2.store(true, SeqCst);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!got.load(SeqCst), "exclusive waits for overlapping shared holders");
        drop(a);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!got.load(SeqCst), "still one overlapping holder");
        drop(_b);
        t.join().unwrap();
        assert!(got.load(SeqCst));
    }

    #[test]
    fn owned_guard_holds_until_dropped() {
        let l = Arc::new(RangeLocks::default());
        let g = l.try_lock_owned(10, 4, Mode::Read).expect("free range");
        assert!(l.try_lock(12, 1, Mode::Exclusive).is_none(), "exclusive refused while the owned guard is held");
        assert!(l.try_lock(12, 1, Mode::Write).is_some(), "a write coexists with a read");
        assert!(l.try_lock(14, 1, Mode::Exclusive).is_some(), "disjoint exclusive is fine");
        drop(g);
        assert!(l.try_lock(12, 1, Mode::Exclusive).is_some(), "released with the guard");
    }

    #[test]
    fn a_hold_keeps_writes_out_but_not_reads() {
        let l = Arc::new(RangeLocks::default());
        let h = l.try_lock_owned(10, 4, Mode::Hold).expect("free range");
        assert!(l.try_lock(13, 2, Mode::Write).is_none(), "no write under a hold");
        assert!(l.try_lock(13, 2, Mode::Exclusive).is_none(), "no atomic write under a hold");
        assert!(l.try_lock(13, 2, Mode::Read).is_some(), "reads go on");
        assert!(l.try_lock(11, 1, Mode::Hold).is_some(), "holds share");
        assert!(l.try_lock(14, 2, Mode::Write).is_some(), "the next block is free");
        let w = l.try_lock_owned(20, 1, Mode::Write).expect("free range");
        assert!(l.try_lock(20, 1, Mode::Hold).is_none(), "no hold over a write in progress");
        drop((h, w));
        assert!(l.try_lock(10, 20, Mode::Exclusive).is_some());
    }
}
