//! The libuv loop itself: one per hub, so one per OS thread.

use super::handle::{check, UvError};
use crate::hub::Hub;
use libuv_sys2 as uv;
use pyo3::prelude::*;
use std::mem::MaybeUninit;
use std::os::raw::c_void;
use std::ptr::NonNull;

pub struct Loop {
    raw: NonNull<uv::uv_loop_t>,
}

/// The loop pointer, sent into `Python::detach` for the blocking poll.
struct DetachedLoop(*mut uv::uv_loop_t);
// SAFETY: the loop is only ever run by its own thread; detach runs the closure on this thread.
unsafe impl Send for DetachedLoop {}

impl Loop {
    pub fn new() -> Result<Self, UvError> {
        // SAFETY: uv_loop_t is plain C data; zeroed memory is a valid input to uv_loop_init.
        let raw = Box::new(unsafe { MaybeUninit::<uv::uv_loop_t>::zeroed().assume_init() });
        let raw = NonNull::from(Box::leak(raw));
        // SAFETY: raw points at a live, exclusively owned uv_loop_t.
        if let Err(e) = check(unsafe { uv::uv_loop_init(raw.as_ptr()) }) {
            // SAFETY: init failed, libuv holds nothing; give the memory back.
            drop(unsafe { Box::from_raw(raw.as_ptr()) });
            return Err(e);
        }
        Ok(Loop { raw })
    }

    pub fn raw(&self) -> *mut uv::uv_loop_t {
        self.raw.as_ptr()
    }

    /// Makes `hub` reachable from every callback on this loop (see `hub_of`).
    pub fn set_hub(&self, hub: &'static Hub) {
        // SAFETY: live loop; data is ours to set.
        unsafe { (*self.raw()).data = hub as *const Hub as *mut c_void };
    }

    /// One non-blocking pass: due timers and ready I/O callbacks run, nothing waits.
    pub fn run_nowait(&self) {
        // SAFETY: live loop, run by its own thread and never re-entered (callbacks do not run it).
        unsafe { uv::uv_run(self.raw(), uv::uv_run_mode_UV_RUN_NOWAIT) };
    }

    /// One blocking pass with the GIL released; callbacks re-attach to Python themselves.
    pub fn run_once_detached(&self, py: Python<'_>) {
        let l = DetachedLoop(self.raw());
        py.detach(move || {
            let l = l;
            // SAFETY: as run_nowait; no Python object is touched without re-attaching.
            unsafe { uv::uv_run(l.0, uv::uv_run_mode_UV_RUN_ONCE) };
        });
    }

    /// True while a referenced handle or request is active (our own internal handles are unref'd).
    pub fn alive(&self) -> bool {
        // SAFETY: live loop.
        unsafe { uv::uv_loop_alive(self.raw()) != 0 }
    }

    /// Re-creates the kernel state (epoll, eventfds) after fork, in the child.
    pub fn after_fork(&self) -> Result<(), UvError> {
        // SAFETY: live loop, called in the child with no other thread using it.
        check(unsafe { uv::uv_loop_fork(self.raw()) }).map(|_| ())
    }

    /// Thread exit: closes every handle still open (their Rust state is leaked, since the
    /// stacks that own them will never run again), finishes the closes and frees the loop.
    /// TCP and UDP handles give their sockets' fds back first: the sockets outlive us.
    pub fn close_at_thread_exit(&self) {
        unsafe extern "C" fn close_one(h: *mut uv::uv_handle_t, _arg: *mut c_void) {
            // SAFETY: h is a live handle of this loop; a NULL close callback frees nothing.
            unsafe {
                if uv::uv_is_closing(h) != 0 {
                    return;
                }
                let l = (*h).loop_;
                match (*h).type_ {
                    uv::uv_handle_type_UV_TCP => {
                        uv::uv_read_stop(h.cast());
                        super::fd_release(l, &raw mut (*(h as *mut uv::uv_tcp_t)).io_watcher);
                    }
                    uv::uv_handle_type_UV_UDP => {
                        uv::uv_udp_recv_stop(h.cast());
                        super::fd_release(l, &raw mut (*(h as *mut uv::uv_udp_t)).io_watcher);
                    }
                    _ => {}
                }
                uv::uv_close(h, None);
            }
        }
        if !super::interpreter_alive() {
            // The process is exiting after Py_Finalize: completions would touch freed
            // Python state, and the kernel reclaims the fds anyway.
            return;
        }
        // SAFETY: live loop owned by this (exiting) thread; nothing else will run it.
        unsafe {
            uv::uv_walk(self.raw(), Some(close_one), std::ptr::null_mut());
            uv::uv_run(self.raw(), uv::uv_run_mode_UV_RUN_DEFAULT);
            if uv::uv_loop_close(self.raw()) == 0 {
                drop(Box::from_raw(self.raw()));
            }
        }
    }
}

/// The hub that owns the loop a callback runs on.
///
/// # Safety
/// `l` must be a loop whose data was set with `Loop::set_hub`; hubs are never freed while
/// their loop can still run callbacks.
pub unsafe fn hub_of<'a>(l: *mut uv::uv_loop_t) -> &'a Hub {
    // SAFETY: per the contract, data points at a live Hub.
    unsafe { &*((*l).data as *const Hub) }
}
