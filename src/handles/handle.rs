//! The base every libuv handle kind builds on: one heap allocation holding the
//! libuv struct and the Rust state its callbacks read, and one owner that
//! closes it. libuv's close callback frees the memory, so a callback never
//! sees freed state. Dropping an owner that was not closed emits a
//! ResourceWarning and closes the handle anyway.

use libuv_sys2 as uv;
use pyo3::exceptions::PyResourceWarning;
use pyo3::prelude::*;
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::os::raw::c_int;
use std::ptr::NonNull;

/// A libuv handle struct (`uv_timer_t`, `uv_poll_t`, ...).
///
/// # Safety
/// `Self` must be a libuv handle type whose first member is a `uv_handle_t` header.
pub unsafe trait RawHandle: Sized {
    const KIND: &'static str;
}

// SAFETY: each of these is a libuv handle struct that begins with the uv_handle_t fields.
unsafe impl RawHandle for uv::uv_timer_t {
    const KIND: &'static str = "timer";
}
// SAFETY: as above.
unsafe impl RawHandle for uv::uv_poll_t {
    const KIND: &'static str = "poll";
}
// SAFETY: as above.
unsafe impl RawHandle for uv::uv_async_t {
    const KIND: &'static str = "async";
}
// SAFETY: as above.
unsafe impl RawHandle for uv::uv_tcp_t {
    const KIND: &'static str = "tcp";
}
// SAFETY: as above.
unsafe impl RawHandle for uv::uv_udp_t {
    const KIND: &'static str = "udp";
}

/// The allocation: the libuv struct first, so a handle pointer is also an allocation pointer.
#[repr(C)]
struct Alloc<R, S> {
    raw: R,
    state: S,
}

/// Owner of one libuv handle of kind `R` with callback state `S`.
pub struct Handle<R: RawHandle, S> {
    ptr: NonNull<Alloc<R, S>>,
    closed: bool,
}

/// A libuv error code with its name and message, e.g. `EBADF: bad file descriptor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UvError(pub c_int);

impl std::fmt::Display for UvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: libuv returns static strings for any code, known or not.
        let (name, msg) = unsafe {
            (
                CStr::from_ptr(uv::uv_err_name(self.0)),
                CStr::from_ptr(uv::uv_strerror(self.0)),
            )
        };
        write!(f, "{}: {}", name.to_string_lossy(), msg.to_string_lossy())
    }
}

impl From<UvError> for PyErr {
    fn from(e: UvError) -> PyErr {
        // libuv errors are negated errno values on Unix.
        pyo3::exceptions::PyOSError::new_err((-e.0, e.to_string()))
    }
}

/// Turns a libuv return code into a Result.
pub fn check(rc: c_int) -> Result<c_int, UvError> {
    if rc < 0 {
        Err(UvError(rc))
    } else {
        Ok(rc)
    }
}

impl<R: RawHandle, S> Handle<R, S> {
    /// Allocates the handle and runs libuv's `init` for it on the allocated struct.
    pub fn new(state: S, init: impl FnOnce(*mut R) -> c_int) -> Result<Self, UvError> {
        let alloc = Box::new(Alloc {
            // SAFETY: libuv handle structs are plain C data; zeroed is a valid pre-init state.
            raw: unsafe { MaybeUninit::<R>::zeroed().assume_init() },
            state,
        });
        let ptr = NonNull::from(Box::leak(alloc));
        // SAFETY: ptr points at our live allocation; raw is its first field.
        let rc = init(unsafe { &raw mut (*ptr.as_ptr()).raw });
        if rc < 0 {
            // SAFETY: init failed, so libuv holds no reference to the memory; free it directly.
            drop(unsafe { Box::from_raw(ptr.as_ptr()) });
            return Err(UvError(rc));
        }
        Ok(Handle { ptr, closed: false })
    }

    pub fn raw(&self) -> *mut R {
        // SAFETY: the allocation is live until close; raw is its first field.
        unsafe { &raw mut (*self.ptr.as_ptr()).raw }
    }

    pub fn as_handle(&self) -> *mut uv::uv_handle_t {
        self.raw() as *mut uv::uv_handle_t
    }

    pub fn state(&self) -> &S {
        // SAFETY: the allocation is live while self exists.
        unsafe { &(*self.ptr.as_ptr()).state }
    }

    /// The state behind a handle pointer that libuv hands to a callback.
    ///
    /// # Safety
    /// `raw` must come from a live `Handle<R, S>` of exactly these type parameters.
    pub unsafe fn state_of<'a>(raw: *mut R) -> &'a S {
        // SAFETY: per the contract, raw is the first field of a live Alloc<R, S>.
        unsafe { &(*(raw as *mut Alloc<R, S>)).state }
    }

    /// The loop this handle belongs to.
    pub fn uv_loop(&self) -> *mut uv::uv_loop_t {
        // SAFETY: the handle was initialised on a loop; the pointer is stored in it.
        unsafe { (*self.as_handle()).loop_ }
    }

    /// Whether this handle keeps the loop alive (`uv_ref`) or not (`uv_unref`).
    pub fn set_ref(&self, keep_alive: bool) {
        // SAFETY: live, initialised handle.
        unsafe {
            if keep_alive {
                uv::uv_ref(self.as_handle())
            } else {
                uv::uv_unref(self.as_handle())
            }
        }
    }

    /// Closes the handle; libuv frees the memory from its close callback.
    pub fn close(mut self) {
        self.close_now();
    }

    fn close_now(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        // SAFETY: live handle, not yet closing; on_close::<R, S> frees exactly this allocation.
        unsafe { uv::uv_close(self.as_handle(), Some(on_close::<R, S>)) };
    }
}

impl<R: RawHandle, S> Drop for Handle<R, S> {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        Python::try_attach(|py| {
            let msg = format!("unclosed libuv {} handle", R::KIND);
            let cat = py.get_type::<PyResourceWarning>();
            if let Err(e) = PyErr::warn(py, &cat, &std::ffi::CString::new(msg).unwrap(), 1) {
                e.write_unraisable(py, None);
            }
        });
        self.close_now();
    }
}

unsafe extern "C" fn on_close<R: RawHandle, S>(h: *mut uv::uv_handle_t) {
    // SAFETY: h was leaked from Box<Alloc<R, S>> in Handle::new and libuv is done with it.
    drop(unsafe { Box::from_raw(h as *mut Alloc<R, S>) });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handles::uv_loop::Loop;
    use std::rc::Rc;

    struct DropFlag(Rc<Cell<bool>>);
    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    use std::cell::Cell;

    #[test]
    fn close_callback_frees_the_state() {
        let l = Loop::new().unwrap();
        let dropped = Rc::new(Cell::new(false));
        let raw_loop = l.raw();
        // SAFETY: live loop; the timer memory belongs to the Handle.
        let h = Handle::<uv::uv_timer_t, _>::new(DropFlag(dropped.clone()), |raw| unsafe {
            uv::uv_timer_init(raw_loop, raw)
        })
        .unwrap();
        assert!(
            !l.alive(),
            "a timer that is not started keeps nothing alive"
        );
        h.close();
        assert!(!dropped.get(), "freed only by libuv's close callback");
        l.run_nowait();
        assert!(dropped.get());
        l.close_at_thread_exit();
    }

    #[test]
    fn failed_init_frees_at_once() {
        let dropped = Rc::new(Cell::new(false));
        let r = Handle::<uv::uv_timer_t, _>::new(DropFlag(dropped.clone()), |_| -9);
        assert_eq!(r.err(), Some(UvError(-9)));
        assert!(dropped.get());
    }

    #[test]
    fn uv_error_names_the_code() {
        assert_eq!(
            UvError(-(libc::EBADF)).to_string(),
            "EBADF: bad file descriptor"
        );
        assert_eq!(check(3), Ok(3));
        assert_eq!(check(-(libc::EAGAIN)), Err(UvError(-(libc::EAGAIN))));
    }
}
