//! The SAM-5 task set of one logical unit: SIMPLE, ORDERED and HEAD OF QUEUE ordering.
//!
//! Commands enter the task set when they arrive (in the order the transport delivers them,
//! which for iSCSI is CmdSN order) and may execute once the gate lets them:
//! - HEAD OF QUEUE commands run at once;
//! - an ORDERED command runs when every command that entered before it has completed;
//! - a SIMPLE command runs when no ORDERED command that entered before it is still pending.
//!
//! The common case, SIMPLE commands with no ORDERED command anywhere, costs one atomic
//! compare-and-swap on entry and one atomic subtraction on completion. A single word holds both
//! the number of running commands and a "slow mode" bit, so the fast path and the locked slow
//! path agree on one linear order without a lock on the fast path.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::AcqRel, Ordering::Acquire};

use parking_lot::Mutex;

use crate::cmd::{CmdBox, TaskAttr};

const SLOW: u64 = 1 << 63;

/// A command's membership in the task set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum Token {
    /// Not in the task set.
    #[default]
    None,
    /// Counted as running (may execute).
    Active,
    /// The ORDERED command currently running.
    ActiveOrdered,
    /// Waiting behind an ORDERED command; the id identifies its queue entry.
    Queued(u64),
}

#[derive(Default)]
struct Waiter {
    id: u64,
    ordered: bool,
    /// The command, once its data arrived and it reached the gate while still blocked.
    parked: Option<CmdBox>,
}

#[derive(Default)]
struct Slow {
    queue: VecDeque<Waiter>,
    /// Ids promoted to running before they reached the gate (still transferring data), with
    /// whether each is the ORDERED one.
    promoted: Vec<(u64, bool)>,
    ordered_running: bool,
    next_id: u64,
}

/// The task set of one logical unit.
#[derive(Default)]
pub(crate) struct TaskSet {
    /// Bit 63: slow mode (an ORDERED command is queued or running); low bits: running commands.
    word: AtomicU64,
    slow: Mutex<Slow>,
}

/// What the gate decided for a command that is ready to execute.
pub(crate) enum Gate {
    /// Execute now (the token may have changed: store it back in the command).
    Run(CmdBox),
    /// Parked until earlier commands complete; it will come back from [`TaskSet::leave`].
    Parked,
}

impl TaskSet {
    /// Enters a newly arrived command.
    pub(crate) fn enter(&self, attr: TaskAttr) -> Token {
        match attr {
            TaskAttr::HeadOfQueue => {
                self.word.fetch_add(1, AcqRel);
                Token::Active
            }
            TaskAttr::Ordered => {
                let mut s = self.slow.lock();
                let w = self.word.fetch_or(SLOW, AcqRel);
                if s.queue.is_empty() && !s.ordered_running && w & !SLOW == 0 {
                    s.ordered_running = true;
                    self.word.fetch_add(1, AcqRel);
                    Token::ActiveOrdered
                } else {
                    Self::queue(&mut s, true)
                }
            }
            TaskAttr::Simple | TaskAttr::Aca => {
                let mut w = self.word.load(Acquire);
                while w & SLOW == 0 {
                    match self.word.compare_exchange_weak(w, w + 1, AcqRel, Acquire) {
                        Ok(_) => return Token::Active,
                        Err(now) => w = now,
                    }
                }
                let mut s = self.slow.lock();
                if self.word.load(Acquire) & SLOW == 0 {
                    // Slow mode ended while we waited for the lock.
                    self.word.fetch_add(1, AcqRel);
                    return Token::Active;
                }
                if s.queue.is_empty() && !s.ordered_running {
                    self.word.fetch_add(1, AcqRel);
                    Token::Active
                } else {
                    Self::queue(&mut s, false)
                }
            }
        }
    }

    fn queue(s: &mut Slow, ordered: bool) -> Token {
        s.next_id += 1;
        let id = s.next_id;
        s.queue.push_back(Waiter { id, ordered, parked: None });
        Token::Queued(id)
    }

    /// Asks whether a command whose data is ready may execute.
    pub(crate) fn gate(&self, mut cmd: CmdBox) -> Gate {
        let Token::Queued(id) = cmd.token else {
            return Gate::Run(cmd);
        };
        let mut s = self.slow.lock();
        if let Some(i) = s.promoted.iter().position(|(p, _)| *p == id) {
            let (_, ordered) = s.promoted.swap_remove(i);
            cmd.token = if ordered { Token::ActiveOrdered } else { Token::Active };
            return Gate::Run(cmd);
        }
        match s.queue.iter_mut().find(|w| w.id == id) {
            Some(w) => {
                w.parked = Some(cmd);
                Gate::Parked
            }
            // Not queued and not promoted cannot happen; run it rather than lose it.
            None => Gate::Run(cmd),
        }
    }

    /// Removes a command from the task set and returns the parked commands this unblocks, with
    /// their tokens updated (ready to execute).
    pub(crate) fn leave(&self, token: Token) -> Vec<CmdBox> {
        match token {
            Token::None => Vec::new(),
            Token::Active => {
                let w = self.word.fetch_sub(1, AcqRel);
                if w & SLOW == 0 {
                    return Vec::new();
                }
                self.advance(&mut self.slow.lock())
            }
            Token::ActiveOrdered => {
                let mut s = self.slow.lock();
                s.ordered_running = false;
                self.word.fetch_sub(1, AcqRel);
                self.advance(&mut s)
            }
            Token::Queued(id) => {
                let mut s = self.slow.lock();
                if let Some(i) = s.promoted.iter().position(|(p, _)| *p == id) {
                    let (_, ordered) = s.promoted.swap_remove(i);
                    if ordered {
                        s.ordered_running = false;
                    }
                    self.word.fetch_sub(1, AcqRel);
                } else {
                    s.queue.retain(|w| w.id != id);
                }
                self.advance(&mut s)
            }
        }
    }

    /// Promotes queued commands that may now run; leaves slow mode when nothing is pending.
    fn advance(&self, s: &mut Slow) -> Vec<CmdBox> {
        let mut out = Vec::new();
        while let Some(front) = s.queue.front() {
            let running = self.word.load(Acquire) & !SLOW;
            let may = if front.ordered { running == 0 && !s.ordered_running } else { !s.ordered_running };
            if !may {
                break;
            }
            let Some(w) = s.queue.pop_front() else { break };
            self.word.fetch_add(1, AcqRel);
            if w.ordered {
                s.ordered_running = true;
            }
            match w.parked {
                Some(mut c) => {
                    c.token = if w.ordered { Token::ActiveOrdered } else { Token::Active };
                    out.push(c);
                }
                None => s.promoted.push((w.id, w.ordered)),
            }
            if w.ordered {
                break;
            }
        }
        if s.queue.is_empty() && !s.ordered_running {
            self.word.fetch_and(!SLOW, AcqRel);
        }
        out
    }

    /// Commands counted as running (for tests and statistics).
    #[cfg(test)]
    pub(crate) fn running(&self) -> u64 {
        self.word.load(Acquire) & !SLOW
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_fast_path() {
        let t = TaskSet::default();
        assert_eq!(t.enter(TaskAttr::Simple), Token::Active);
        assert_eq!(t.enter(TaskAttr::Simple), Token::Active);
        assert_eq!(t.running(), 2);
        assert!(t.leave(Token::Active).is_empty());
        assert!(t.leave(Token::Active).is_empty());
        assert_eq!(t.running(), 0);
    }

    #[test]
    fn ordered_waits_for_earlier_and_blocks_later() {
        let t = TaskSet::default();
        let a = t.enter(TaskAttr::Simple);
        let o = t.enter(TaskAttr::Ordered);
        assert!(matches!(o, Token::Queued(_)));
        let b = t.enter(TaskAttr::Simple);
        assert!(matches!(b, Token::Queued(_)), "SIMPLE after a pending ORDERED waits");
        let h = t.enter(TaskAttr::HeadOfQueue);
        assert_eq!(h, Token::Active, "HEAD OF QUEUE never waits");
        // Neither the ORDERED nor the later SIMPLE has reached the gate yet (no parked boxes),
        // so completions promote them by id.
        assert!(t.leave(a).is_empty());
        assert!(t.leave(h).is_empty());
        // Now the ORDERED one is promoted; the SIMPLE behind it is not.
        {
            let s = t.slow.lock();
            assert_eq!(s.promoted.len(), 1);
            assert!(s.promoted[0].1, "the ORDERED command");
            assert_eq!(s.queue.len(), 1);
        }
        let Token::Queued(oid) = o else { unreachable!() };
        // The ORDERED command completes; the SIMPLE one is promoted and slow mode ends.
        t.leave(Token::Queued(oid));
        assert_eq!(t.slow.lock().queue.len(), 0);
        let Token::Queued(bid) = b else { unreachable!() };
        t.leave(Token::Queued(bid));
        assert_eq!(t.running(), 0);
        assert_eq!(t.word.load(Acquire) & SLOW, 0, "back to the fast path");
        assert_eq!(t.enter(TaskAttr::Simple), Token::Active);
    }

    #[test]
    fn abandoned_waiter_unblocks_the_rest() {
        let t = TaskSet::default();
        let a = t.enter(TaskAttr::Simple);
        let o = t.enter(TaskAttr::Ordered);
        // The ORDERED command is dropped before it ever ran (its connection died).
        t.leave(o);
        t.leave(a);
        assert_eq!(t.running(), 0);
        assert_eq!(t.word.load(Acquire) & SLOW, 0);
    }
}
