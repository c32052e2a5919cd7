//! Unit attention conditions (SPC-4 §5.14).
//!
//! Device-wide events (capacity changed, mode parameters changed, ...) go into the device's
//! [`UaLog`] with a generation number. Each I_T nexus keeps, per LUN, the last generation it has
//! seen and a queue of pending conditions ([`NexusUa`]). A command compares two atomics on its
//! way in; only when something happened does it take a lock and pull the new events into the
//! nexus's queue. No registry of sessions per device is needed and the fast path takes no lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::AcqRel, Ordering::Acquire, Ordering::Release};

use parking_lot::Mutex;

use crate::pr::Nexus;
use crate::wire::sense::SenseCode;

/// Most conditions kept per nexus and LUN (SPC-4 lets a device server drop the oldest).
const MAX_PENDING: usize = 16;
/// Events a device remembers for nexuses that have not caught up.
const LOG_LEN: usize = 64;

#[derive(Clone)]
struct Event {
    generation: u64,
    code: SenseCode,
    /// The session whose action caused it (SPC: that nexus is not told).
    origin: Option<u64>,
    /// Only this nexus is told (reservation events), when set.
    to: Option<Nexus>,
}

/// A device's broadcast log.
#[derive(Default)]
pub(crate) struct UaLog {
    generation: AtomicU64,
    events: Mutex<VecDeque<Event>>,
}

impl UaLog {
    /// Raises `code` for every nexus that sees the device, except `origin`'s.
    pub(crate) fn raise(&self, code: SenseCode, origin: Option<u64>) {
        self.push(Event { generation: 0, code, origin, to: None });
    }

    /// Raises `code` for one I_T nexus only (every target port of the initiator port when
    /// `to.rel_port` is 0).
    pub(crate) fn raise_for(&self, code: SenseCode, to: Nexus) {
        self.push(Event { generation: 0, code, origin: None, to: Some(to) });
    }

    fn push(&self, mut e: Event) {
        let mut ev = self.events.lock();
        e.generation = self.generation.load(Acquire) + 1;
        if ev.len() == LOG_LEN {
            ev.pop_front();
        }
        let g = e.generation;
        ev.push_back(e);
        self.generation.store(g, Release);
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Acquire)
    }
}

/// The unit attention state of one LUN on one I_T nexus.
pub(crate) struct NexusUa {
    seen: AtomicU64,
    has: AtomicBool,
    pending: Mutex<VecDeque<SenseCode>>,
}

impl NexusUa {
    /// A fresh state that has seen the device's log up to `generation`.
    pub(crate) fn new(generation: u64) -> Self {
        Self { seen: AtomicU64::new(generation), has: AtomicBool::new(false), pending: Mutex::new(VecDeque::new()) }
    }

    /// Queues a condition for this nexus only.
    pub(crate) fn push(&self, code: SenseCode) {
        let mut p = self.pending.lock();
        if p.contains(&code) {
            return;
        }
        if p.len() == MAX_PENDING {
            p.pop_front();
        }
        // POWER ON / RESET supersedes everything older (SPC-4 §5.14: a device may clear the
        // other conditions when it establishes a reset condition).
        if code.asc == 0x29 {
            p.clear();
        }
        p.push_back(code);
        self.has.store(true, Release);
    }

    /// Takes the oldest pending condition, after pulling in device events this nexus has not
    /// seen. `session` filters out events the nexus caused itself; `nexus` selects targeted ones.
    pub(crate) fn take(&self, log: &UaLog, session: u64, nexus: &Nexus) -> Option<SenseCode> {
        self.sync(log, session, nexus);
        if !self.has.load(Acquire) {
            return None;
        }
        let mut p = self.pending.lock();
        let c = p.pop_front();
        self.has.store(!p.is_empty(), Release);
        c
    }

    /// Whether a condition is pending (QUERY ASYNCHRONOUS EVENT), without consuming it.
    pub(crate) fn pending(&self, log: &UaLog, session: u64, nexus: &Nexus) -> bool {
        self.sync(log, session, nexus);
        self.has.load(Acquire)
    }

    /// Drops a pending condition (REPORT LUNS clears REPORTED LUNS DATA HAS CHANGED).
    pub(crate) fn remove(&self, log: &UaLog, session: u64, nexus: &Nexus, code: SenseCode) {
        self.sync(log, session, nexus);
        let mut p = self.pending.lock();
        p.retain(|c| *c != code);
        self.has.store(!p.is_empty(), Release);
    }

    fn sync(&self, log: &UaLog, session: u64, nexus: &Nexus) {
        let g = log.generation();
        let seen = self.seen.load(Acquire);
        if g == seen {
            return;
        }
        if self.seen.compare_exchange(seen, g, AcqRel, Acquire).is_err() {
            return; // another command of this nexus is pulling the same events
        }
        let ev = log.events.lock();
        let targeted = |e: &Event| {
            e.to.as_ref().is_none_or(|t| {
                t.initiator == nexus.initiator
                    && t.port_suffix == nexus.port_suffix
                    && (t.rel_port == 0 || t.rel_port == nexus.rel_port)
            })
        };
        for e in ev.iter().filter(|e| e.generation > seen && e.generation <= g && e.origin != Some(session)) {
            if targeted(e) {
                self.push(e.code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nx(name: &str) -> Nexus {
        Nexus { initiator: name.into(), port_suffix: String::new(), rel_port: 1, protocol: 5 }
    }

    #[test]
    fn targeted_events_reach_one_nexus() {
        let log = UaLog::default();
        let (a, b) = (NexusUa::new(0), NexusUa::new(0));
        log.raise_for(SenseCode::REGISTRATIONS_PREEMPTED, nx("iqn.b"));
        assert_eq!(a.take(&log, 1, &nx("iqn.a")), None);
        assert_eq!(b.take(&log, 2, &nx("iqn.b")), Some(SenseCode::REGISTRATIONS_PREEMPTED));
    }

    #[test]
    fn broadcast_skips_origin_and_keeps_order() {
        let log = UaLog::default();
        let a = NexusUa::new(log.generation());
        let b = NexusUa::new(log.generation());
        log.raise(SenseCode::MODE_PARAMETERS_CHANGED, Some(1));
        log.raise(SenseCode::CAPACITY_DATA_HAS_CHANGED, None);
        let (na, nb) = (nx("iqn.a"), nx("iqn.b"));
        assert_eq!(a.take(&log, 1, &na), Some(SenseCode::CAPACITY_DATA_HAS_CHANGED));
        assert_eq!(a.take(&log, 1, &na), None);
        assert_eq!(b.take(&log, 2, &nb), Some(SenseCode::MODE_PARAMETERS_CHANGED));
        assert_eq!(b.take(&log, 2, &nb), Some(SenseCode::CAPACITY_DATA_HAS_CHANGED));
        assert_eq!(b.take(&log, 2, &nb), None);
    }

    #[test]
    fn reset_supersedes_older_conditions() {
        let log = UaLog::default();
        let n = NexusUa::new(0);
        n.push(SenseCode::CAPACITY_DATA_HAS_CHANGED);
        n.push(SenseCode::POWER_ON_RESET);
        n.push(SenseCode::POWER_ON_RESET);
        assert_eq!(n.take(&log, 0, &nx("i")), Some(SenseCode::POWER_ON_RESET));
        assert_eq!(n.take(&log, 0, &nx("i")), None);
    }
}
