//! One module per libuv handle kind, over the shared lifecycle in `handle`.
//! All of the crate's libuv `unsafe` lives below this module.

pub mod async_wakeup;
pub mod dns;
pub mod handle;
pub mod poll;
pub mod tcp;
pub mod timer;
pub mod udp;
pub mod uv_loop;
pub mod waiters;
pub mod work;

use libuv_sys2 as uv;
use pyo3::Python;

/// False once Py_Finalize has begun (e.g. in the main thread's TLS destructors at exit).
pub(crate) fn interpreter_alive() -> bool {
    // SAFETY: Py_IsInitialized may be called at any time, with or without the GIL.
    unsafe { pyo3::ffi::Py_IsInitialized() != 0 }
}

/// Hands `value` to `f` with the GIL. A request that completes while an exiting thread
/// drains its loop may find the interpreter already finalized: then nothing Python is
/// touched and `value` (which holds Python objects) is leaked instead of dropped.
pub(crate) fn attach_or_leak<T>(value: T, f: impl FnOnce(Python<'_>, T)) {
    if !interpreter_alive() {
        std::mem::forget(value);
        return;
    }
    let mut slot = Some(value);
    let _ = Python::try_attach(|py| {
        if let Some(v) = slot.take() {
            f(py, v);
        }
    });
    if let Some(v) = slot {
        std::mem::forget(v);
    }
}

/// Takes a socket fd back from a libuv stream or udp handle that was given it with
/// uv_tcp_open/uv_udp_open, so that closing the handle leaves the fd open: the epoll
/// registration is removed while the fd is still open, and the watcher forgets the fd
/// (libuv's close paths skip an fd of -1). Reading must already be stopped.
///
/// # Safety
/// `w` must be the io watcher of a live, stopped handle of loop `l`, on `l`'s thread.
pub(crate) unsafe fn fd_release(l: *mut uv::uv_loop_t, w: *mut uv::uv__io_t) {
    // SAFETY: per the contract; epoll_ctl only reads its arguments, and a DEL that fails
    // (never registered) is harmless.
    unsafe {
        let fd = (*w).fd;
        if fd >= 0 {
            libc::epoll_ctl(
                uv::uv_backend_fd(l),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            );
            (*w).fd = -1;
        }
    }
}
