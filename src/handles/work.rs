//! uv_work_t: runs a Python callable on libuv's thread pool (for blocking C calls that
//! release the GIL, e.g. gethostbyaddr) and hands the outcome to a ThreadResult.

use super::handle::{check, UvError};
use crate::thread_result::ThreadResult;
use libuv_sys2 as uv;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

#[repr(C)]
struct Work {
    raw: uv::uv_work_t,
    func: Py<PyAny>,
    args: Py<PyTuple>,
    result: Py<ThreadResult>,
}

pub fn queue(
    l: *mut uv::uv_loop_t,
    func: Py<PyAny>,
    args: Py<PyTuple>,
    result: Py<ThreadResult>,
) -> Result<(), UvError> {
    let work = Box::into_raw(Box::new(Work {
        // SAFETY: zeroed is a valid state before uv_queue_work fills the request.
        raw: unsafe { std::mem::zeroed() },
        func,
        args,
        result,
    }));
    // SAFETY: work is ours until after_work; the callbacks match this layout.
    let rc = unsafe { uv::uv_queue_work(l, &raw mut (*work).raw, Some(run), Some(after)) };
    if let Err(e) = check(rc) {
        // SAFETY: the request was not queued; libuv holds no reference.
        drop(unsafe { Box::from_raw(work) });
        return Err(e);
    }
    Ok(())
}

unsafe extern "C" fn run(raw: *mut uv::uv_work_t) {
    // SAFETY: raw is the first field of a live Work; only this pool thread uses it now.
    let work = unsafe { &*(raw as *const Work) };
    // try_attach: never start an interpreter that is shutting down.
    Python::try_attach(|py| {
        let outcome = work.func.call1(py, work.args.bind(py).clone());
        work.result.get().set_outcome(outcome);
    });
}

unsafe extern "C" fn after(raw: *mut uv::uv_work_t, _status: c_int) {
    // SAFETY: raw is the first field of the Work leaked in queue; libuv is done with it.
    let work = unsafe { Box::from_raw(raw as *mut Work) };
    super::attach_or_leak(work, |_py, work| drop(work));
}

use std::os::raw::c_int;
