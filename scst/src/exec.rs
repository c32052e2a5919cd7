//! Moving a command from "data ready" to "response ready": the task-set gate, inline or worker
//! execution, completion and delivery to the fabric.
//!
//! Threads: [`ready`] runs on the caller's thread (a fabric thread inside
//! [`crate::Session::submit`] or [`crate::Session::data_received`]). An inline command is
//! executed right there and comes back as [`Step::Done`]; a blocking one crosses to a device
//! worker exactly once and comes back through [`crate::TargetDriver::xmit_response`]. Either way
//! the command leaves the task set when the fabric drops it; commands that unblocks run on the
//! device's workers.

use std::sync::atomic::Ordering::Relaxed;

use crate::cmd::{Cmd, CmdBox, ExecContext, IN_FLIGHT_DEVICE, IN_FLIGHT_SESSION, ScsiStatus};
use crate::ops::Op;
use crate::stats::OpClass;
use crate::task_set::Gate;
use crate::tm::Stage;

/// What the fabric must do next with a command it handed to the core.
#[must_use = "a command handed back by the core must be transmitted or dropped"]
#[derive(Debug)]
pub enum Step {
    /// Data-Out is needed: receive [`crate::Cmd::data_out_len`] bytes into
    /// [`crate::Cmd::buf_mut`], then call [`crate::Session::data_received`].
    NeedData(CmdBox),
    /// The command is complete: send its Data-In, status and sense now, then drop it.
    Done(CmdBox),
    /// The core kept the command; it comes back through
    /// [`crate::TargetDriver::xmit_response`], possibly on another thread, possibly before this
    /// call returns.
    Pending,
}

/// Data is in place: pass the task-set gate, then execute.
pub(crate) fn ready(cmd: CmdBox) -> Step {
    let Some(dev) = cmd.dev.clone() else {
        return Step::Done(cmd);
    };
    match dev.task_set.gate(cmd) {
        Gate::Run(cmd) => dispatch(cmd),
        Gate::Parked => Step::Pending,
    }
}

fn dispatch(mut cmd: CmdBox) -> Step {
    // The command leaves the task set when the fabric drops it, after its response went out
    // (SAM-5: a command is complete when its status was delivered), so a command waiting behind
    // it can never be answered first.
    match cmd.info.ctx {
        ExecContext::Inline => {
            execute(&mut cmd);
            Step::Done(cmd)
        }
        ExecContext::Worker => {
            let dev = cmd.dev.clone().expect("dispatched command has a device");
            // A command that needs no waiting this time (a READ from the page cache) is done
            // here, saving the hand-off.
            if !cmd.is_aborted() && dev.handler().try_exec_nowait(&mut cmd) {
                return Step::Done(cmd);
            }
            // An asynchronous handler (pass-through) starts it here and completes it later.
            let cmd = if cmd.is_aborted() {
                cmd
            } else {
                match dev.handler().start(cmd) {
                    Ok(()) => return Step::Pending,
                    Err(cmd) => cmd,
                }
            };
            dev.queue_exec(cmd);
            Step::Pending
        }
    }
}

/// Worker-thread entry: execute (also inline-context commands a completion released from the
/// task set), then deliver through the fabric.
pub(crate) fn run_on_worker(mut cmd: CmdBox) {
    execute(&mut cmd);
    deliver(cmd);
}

fn execute(cmd: &mut CmdBox) {
    let Some(dev) = cmd.dev.clone() else { return };
    if cmd.is_aborted() {
        cmd.set_status(ScsiStatus::TASK_ABORTED);
        return;
    }
    match dev.handler().pass_through() {
        // The reservation commands of a pass-through device are the core's (unless forwarded).
        Some(pt) if !pt.forward_reservations && cmd.op().is_some_and(|o| crate::session::is_reservation(o.op)) => {
            let r = match cmd.op().map(|o| o.op) {
                Some(Op::PersistentReserveIn) => crate::pr::exec::prin(cmd),
                Some(Op::PersistentReserveOut) => crate::pr::exec::prout(cmd),
                Some(Op::Reserve6 | Op::Reserve10) => crate::pr::exec::reserve(cmd),
                _ => crate::pr::exec::release(cmd),
            };
            cmd.complete_with(r);
        }
        Some(_) => {
            dev.handler().exec(cmd);
            fan_out_unit_attention(&dev, cmd);
        }
        None => dev.handler().exec(cmd),
    }
}

/// Completes a command a handler started with [`crate::DeviceHandler::start`]: its status,
/// sense and Data-In are final. The response goes to the fabric from the calling thread
/// ([`crate::TargetDriver::xmit_response`], which never blocks). A unit attention a
/// pass-through device returned is also queued for the other nexuses, as after `exec`.
pub fn complete(cmd: CmdBox) {
    let Some(dev) = cmd.dev.clone() else {
        deliver(cmd);
        return;
    };
    if dev.handler().pass_through().is_some() {
        fan_out_unit_attention(&dev, &cmd);
    }
    deliver(cmd);
}

/// A pass-through device reports its unit attentions (power on, reset, capacity or medium
/// changed) to the one initiator it knows, the target: the command that received it returns it
/// to its own nexus as the device wrote it, and the core queues it for every other nexus that
/// sees the device (SPC-4 §5.14: a unit attention is established for every I_T nexus).
fn fan_out_unit_attention(dev: &crate::Device, cmd: &CmdBox) {
    if cmd.status != ScsiStatus::CHECK_CONDITION {
        return;
    }
    if let Some(code) = crate::Sense::parse_code(cmd.sense())
        && code.key == crate::SenseKey::UNIT_ATTENTION
    {
        dev.raise_ua(code, Some(cmd.session().id()));
    }
}

/// Counts a command whose status is final, once: latency, errors, bytes. Allocates nothing,
/// takes no lock. With counting off only the device's CHECK CONDITION count moves.
pub(crate) fn record_completion(cmd: &mut Cmd) {
    let check = cmd.status == ScsiStatus::CHECK_CONDITION;
    let Some(t0) = cmd.received.take() else {
        if check && let Some(dev) = cmd.dev.as_ref() {
            dev.stats().errors.fetch_add(1, Relaxed);
        }
        return;
    };
    let latency = t0.elapsed();
    let class = OpClass::of(cmd);
    let (status, flags) = (cmd.status, cmd.in_flight);
    cmd.in_flight = 0;
    if flags & IN_FLIGHT_SESSION != 0
        && let Some(sess) = cmd.sess.as_ref()
    {
        let st = sess.stats();
        st.io.record(class, status, cmd.sense(), latency);
        if check {
            st.errors.fetch_add(1, Relaxed);
        }
        if matches!(status, ScsiStatus::GOOD | ScsiStatus::CONDITION_MET) {
            match class {
                OpClass::Read => {
                    st.read_bytes.fetch_add(cmd.data_in_len() as u64, Relaxed);
                }
                OpClass::Write => {
                    st.write_bytes.fetch_add(cmd.data_out_len() as u64, Relaxed);
                }
                OpClass::Other => {}
            }
        }
    }
    if let Some(dev) = cmd.dev.as_ref() {
        let st = dev.stats();
        if flags & IN_FLIGHT_DEVICE != 0 {
            st.io.record(class, status, cmd.sense(), latency);
        }
        if check {
            st.errors.fetch_add(1, Relaxed);
        }
    }
}

/// A command dropped before it completed is counted as abandoned (it is no longer in flight).
pub(crate) fn abandon(cmd: &mut Cmd) {
    if cmd.in_flight & IN_FLIGHT_SESSION != 0
        && let Some(sess) = cmd.sess.as_ref()
    {
        sess.stats().io.abandoned.fetch_add(1, Relaxed);
    }
    if cmd.in_flight & IN_FLIGHT_DEVICE != 0
        && let Some(dev) = cmd.dev.as_ref()
    {
        dev.stats().io.abandoned.fetch_add(1, Relaxed);
    }
    cmd.in_flight = 0;
    cmd.received = None;
}

fn deliver(mut cmd: CmdBox) {
    record_completion(&mut cmd);
    let sess = cmd.session();
    sess.slots().set_stage(cmd.slot, Stage::Done);
    let fabric = sess.fabric().clone();
    fabric.xmit_response(cmd);
}
