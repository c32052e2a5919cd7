//! Asymmetric logical unit access (ALUA, SPC-4 §5.16): target port groups and their access
//! states.
//!
//! Every logical unit of a [`crate::Target`] shares its table of target port groups (one
//! device group per target). A session's state is that of the group its port belongs to
//! ([`crate::TargetPort::tpg_id`]). Without a table the target reports implicit ALUA with one
//! active/optimized group, which is what initiators expect of a single-path target.
//!
//! States change implicitly through [`crate::Target::set_port_group_state`] (a cluster manager
//! failing over) or explicitly through SET TARGET PORT GROUPS from an initiator when the
//! table allows it; either way the I_T nexuses that did not ask for the change get ASYMMETRIC
//! ACCESS STATE CHANGED.

use crate::ops::Op;
use crate::wire::sense::SenseCode;

/// A primary target port asymmetric access state (SPC-4 table 182).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AluaState {
    /// Active/optimized: every command, the preferred path.
    ActiveOptimized = 0x0,
    /// Active/non-optimized: every command, a slower path.
    ActiveNonOptimized = 0x1,
    /// Standby: management commands only; I/O gets NOT READY, TARGET PORT IN STANDBY STATE.
    Standby = 0x2,
    /// Unavailable: identification only; other commands get NOT READY, TARGET PORT IN
    /// UNAVAILABLE STATE.
    Unavailable = 0x3,
    /// Offline: the ports are out of service; commands get NOT READY, OFFLINE.
    Offline = 0xe,
    /// Transitioning between states: NOT READY, ASYMMETRIC ACCESS STATE TRANSITION.
    Transitioning = 0xf,
}

impl AluaState {
    /// Parses the state's name as the command line spells it (`active`, `nonoptimized`,
    /// `standby`, `unavailable`, `offline`, `transitioning`).
    pub fn from_name(s: &str) -> Option<Self> {
        Some(match s {
            "active" | "optimized" | "active/optimized" => Self::ActiveOptimized,
            "nonoptimized" | "non-optimized" | "active/non-optimized" => Self::ActiveNonOptimized,
            "standby" => Self::Standby,
            "unavailable" => Self::Unavailable,
            "offline" => Self::Offline,
            "transitioning" => Self::Transitioning,
            _ => return None,
        })
    }

    /// The state from its wire code.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0x0 => Self::ActiveOptimized,
            0x1 => Self::ActiveNonOptimized,
            0x2 => Self::Standby,
            0x3 => Self::Unavailable,
            0xe => Self::Offline,
            0xf => Self::Transitioning,
            _ => return None,
        })
    }

    /// Whether SET TARGET PORT GROUPS may request this state (SPC-4 §6.50: offline and
    /// transitioning are not requestable).
    pub fn requestable(self) -> bool {
        matches!(self, Self::ActiveOptimized | Self::ActiveNonOptimized | Self::Standby | Self::Unavailable)
    }

    /// Whether a port in this state processes `op` (SPC-4 §5.16.2.4), or the sense to end it
    /// with.
    ///
    /// # Errors
    /// The NOT READY code of the state for a command it does not serve.
    pub fn admits(self, op: Op) -> Result<(), SenseCode> {
        use Op::*;
        let identify = matches!(op, Inquiry | ReportLuns | RequestSense | ReportTargetPortGroups | SetTargetPortGroups);
        let (ok, code) = match self {
            Self::ActiveOptimized | Self::ActiveNonOptimized => (true, SenseCode::NOT_READY_ALUA_STANDBY),
            Self::Standby => (
                identify
                    || matches!(
                        op,
                        ModeSense6
                            | ModeSense10
                            | ModeSelect6
                            | ModeSelect10
                            | PersistentReserveIn
                            | PersistentReserveOut
                            | ReportSupportedOpcodes
                            | ReportSupportedTmf
                    ),
                SenseCode::NOT_READY_ALUA_STANDBY,
            ),
            Self::Unavailable => (identify, SenseCode::NOT_READY_ALUA_UNAVAILABLE),
            Self::Transitioning => (identify && op != SetTargetPortGroups, SenseCode::NOT_READY_ALUA_TRANSITION),
            Self::Offline => (identify && op != SetTargetPortGroups, SenseCode::NOT_READY_OFFLINE),
        };
        if ok { Ok(()) } else { Err(code) }
    }
}

/// One target port group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortGroup {
    /// Target port group identifier (non-zero).
    pub id: u16,
    /// Its access state.
    pub state: AluaState,
    /// PREF: the preferred group for the logical units.
    pub preferred: bool,
    /// Relative target port identifiers of the group's ports that this process does not serve
    /// (the other node of a cluster), for REPORT TARGET PORT GROUPS; the local ports of the
    /// group are listed from their sessions.
    pub remote_ports: Vec<u16>,
}

impl PortGroup {
    /// An active/optimized group with no remote ports.
    pub fn new(id: u16) -> Self {
        Self { id, state: AluaState::ActiveOptimized, preferred: false, remote_ports: Vec::new() }
    }
}

/// Why the ALUA table refused a change.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AluaError {
    /// No group with that identifier.
    #[error("no target port group {0}")]
    NoGroup(u16),
    /// Two groups with one identifier, or identifier 0.
    #[error("bad or duplicate target port group id {0}")]
    BadId(u16),
}

/// The ALUA table of a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AluaConfig {
    /// The groups.
    pub groups: Vec<PortGroup>,
    /// Whether initiators may change states with SET TARGET PORT GROUPS (TPGS 11b instead of
    /// 01b).
    pub explicit: bool,
}

/// The table as the target keeps it: groups with the status code REPORT TARGET PORT GROUPS
/// shows (00h none, 01h altered by SET TARGET PORT GROUPS, 02h altered implicitly).
#[derive(Clone, Debug)]
pub(crate) struct AluaTable {
    pub(crate) groups: Vec<(PortGroup, u8)>,
    pub(crate) explicit: bool,
}

impl AluaTable {
    pub(crate) fn new(cfg: AluaConfig) -> Result<Self, AluaError> {
        for (i, g) in cfg.groups.iter().enumerate() {
            if g.id == 0 || cfg.groups[..i].iter().any(|h| h.id == g.id) {
                return Err(AluaError::BadId(g.id));
            }
        }
        Ok(Self { groups: cfg.groups.into_iter().map(|g| (g, 0)).collect(), explicit: cfg.explicit })
    }

    pub(crate) fn state(&self, tpg: u16) -> Option<AluaState> {
        self.groups.iter().find(|(g, _)| g.id == tpg).map(|(g, _)| g.state)
    }

    pub(crate) fn group_mut(&mut self, tpg: u16) -> Result<&mut (PortGroup, u8), AluaError> {
        self.groups.iter_mut().find(|(g, _)| g.id == tpg).ok_or(AluaError::NoGroup(tpg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_admit_what_spc4_lists() {
        use AluaState::*;
        for s in [ActiveOptimized, ActiveNonOptimized] {
            assert_eq!(s.admits(Op::Write10), Ok(()));
        }
        assert_eq!(Standby.admits(Op::Read10), Err(SenseCode::NOT_READY_ALUA_STANDBY));
        assert_eq!(Standby.admits(Op::TestUnitReady), Err(SenseCode::NOT_READY_ALUA_STANDBY));
        assert_eq!(Standby.admits(Op::PersistentReserveOut), Ok(()));
        assert_eq!(Standby.admits(Op::ModeSense10), Ok(()));
        assert_eq!(Unavailable.admits(Op::ModeSense10), Err(SenseCode::NOT_READY_ALUA_UNAVAILABLE));
        assert_eq!(Unavailable.admits(Op::SetTargetPortGroups), Ok(()));
        assert_eq!(Transitioning.admits(Op::ReportTargetPortGroups), Ok(()));
        assert_eq!(Transitioning.admits(Op::SetTargetPortGroups), Err(SenseCode::NOT_READY_ALUA_TRANSITION));
        assert_eq!(Offline.admits(Op::Read16), Err(SenseCode::NOT_READY_OFFLINE));
        assert_eq!(Offline.admits(Op::Inquiry), Ok(()));
    }

    #[test]
    fn codes_and_names() {
        for c in [0u8, 1, 2, 3, 0xe, 0xf] {
            assert_eq!(AluaState::from_code(c).map(|s| s as u8), Some(c));
        }
        assert_eq!(AluaState::from_code(4), None, "LBA-dependent is not supported");
        assert_eq!(AluaState::from_name("standby"), Some(AluaState::Standby));
        assert!(!AluaState::Offline.requestable());
        assert!(
            AluaTable::new(AluaConfig { groups: vec![PortGroup::new(1), PortGroup::new(1)], explicit: true }).is_err()
        );
        assert!(AluaTable::new(AluaConfig { groups: vec![PortGroup::new(0)], explicit: true }).is_err());
    }
}
