//! # scst: a transport-agnostic SCSI target engine
//!
//! ```text
//!  fabrics (iSCSI, SRP, FC, loopback)      TargetDriver: xmit_response, tm_done, abort_pending
//!        │  Session::alloc_cmd / submit / data_received / submit_tm      ▲
//!        ▼                                                               │ (async completions)
//!  ┌──────────────────── core (runs on the caller's thread) ─────────────┴──┐
//!  │ LUN view → unit attentions → opcode table + CDB usage check → handler │
//!  │ parse → task set (SIMPLE/ORDERED/HEAD OF QUEUE) → SGV buffer          │
//!  └──────┬─────────────────────────────────────────────┬─────────────────┘
//!         │ inline (RAM, NULLIO, emulated SPC)           │ one hand-off (may block)
//!         ▼                                              ▼
//!   DeviceHandler::exec (Disk<S: BlockStore>)     device worker threads
//!                        │ preadv/pwritev on the command's own segments
//!                        ▼
//!                  BlockStore (scst-backends: NULLIO, RAM, FILEIO, BLOCKIO)
//! ```
//!
//! A command ([`Cmd`]) lives in a per-session pool and moves by value ([`CmdBox`]) from stage
//! to stage, so exactly one owner can touch it at a time. Its data buffer comes from the
//! [`sgv`] allocator, which reuses page-aligned chunks: in steady state the data path allocates
//! nothing. When the backing store does not block, a command completes on the thread that
//! submitted it ([`Step::Done`]); otherwise it crosses to a device worker once and comes back
//! through [`TargetDriver::xmit_response`].
//!
//! SCSI outcomes are values, not Rust errors: handlers return `Result<_, Sense>` and the core
//! writes sense bytes in one place, in the format the logical unit's D_SENSE selects.
#![deny(unsafe_code)]

pub mod acl;
pub mod alua;
pub mod batch;
pub mod cmd;
pub mod dev;
mod exec;
pub mod ops;
pub mod pr;
pub mod sbc;
pub mod session;
pub mod sgv;
pub mod stats;
pub mod store;
pub mod target;
mod task_set;
pub mod tm;
mod ua;
pub mod wait;
pub mod wire;

pub use cmd::{Cmd, CmdBox, CmdHeader, CmdInfo, DataInHold, ExecContext, ScsiStatus, TaskAttr};
pub use dev::{Device, DeviceConfig, DeviceHandler, PassThrough};
pub use exec::{Step, complete};
pub use ops::DataDir;
pub use sbc::Disk;
pub use session::{QueueFull, Session, SessionConfig};
pub use sgv::{ChunkObserver, SgBuf, SgvConfig, SgvPool};
pub use store::{BlockIo, BlockStore, Geometry, IoKind, SizeNotify, StoreCaps};
pub use target::{MappedLun, ProtocolId, Target, TargetDriver, TargetPort};
pub use tm::{TmFunction, TmHold, TmOutcome, TmRequest, TmResponse, TmStatus};
pub use wire::lun::Lun;
pub use wire::sense::{Sense, SenseCode, SenseKey};
