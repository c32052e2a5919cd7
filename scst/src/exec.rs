//! Moving a command from "data ready" to "response ready": the task-set gate, inline or worker
//! execution, completion and delivery to the fabric.
//!
//! Threads: [`ready`] runs on the caller's thread (a fabric thread inside
//! [`crate::Session::submit`] or [`crate::Session::data_received`]). An inline command is
//! executed and completed right there and comes back as [`Step::Done`]; a blocking one crosses
//! to a device worker exactly once and comes back through [`crate::TargetDriver::xmit_response`].

use crate::cmd::{CmdBox, ExecContext, ScsiStatus};
use crate::task_set::{Gate, Token};
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
    match cmd.info.ctx {
        ExecContext::Inline => {
            execute(&mut cmd);
            let released = leave(&mut cmd);
            run_released(released);
            Step::Done(cmd)
        }
        ExecContext::Worker => {
            let dev = cmd.dev.clone().expect("dispatched command has a device");
            dev.queue_exec(cmd);
            Step::Pending
        }
    }
}

/// Worker-thread entry: execute (even inline-context commands released from elsewhere),
/// complete, deliver.
pub(crate) fn run_on_worker(mut cmd: CmdBox) {
    if cmd.token != Token::None || cmd.op.is_some() {
        execute(&mut cmd);
    }
    let released = leave(&mut cmd);
    deliver(cmd);
    run_released(released);
}

fn execute(cmd: &mut CmdBox) {
    let Some(dev) = cmd.dev.clone() else { return };
    if cmd.is_aborted() {
        cmd.set_status(ScsiStatus::TASK_ABORTED);
        return;
    }
    dev.handler().exec(cmd);
    let st = dev.stats();
    st.commands.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if cmd.status == ScsiStatus::CHECK_CONDITION {
        st.errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn leave(cmd: &mut CmdBox) -> Vec<CmdBox> {
    let token = std::mem::take(&mut cmd.token);
    match &cmd.dev {
        Some(dev) => dev.task_set.leave(token),
        None => Vec::new(),
    }
}

/// Runs commands a completion released from the task set, on this thread when they do not
/// block, and delivers them through their fabrics.
fn run_released(mut list: Vec<CmdBox>) {
    while let Some(mut cmd) = list.pop() {
        match cmd.info.ctx {
            ExecContext::Inline => {
                execute(&mut cmd);
                list.extend(leave(&mut cmd));
                deliver(cmd);
            }
            ExecContext::Worker => {
                let dev = cmd.dev.clone().expect("released command has a device");
                dev.queue_exec(cmd);
            }
        }
    }
}

fn deliver(cmd: CmdBox) {
    let sess = cmd.session();
    sess.slots().set_stage(cmd.slot, Stage::Done);
    let fabric = sess.fabric().clone();
    fabric.xmit_response(cmd);
}
