//! Thin, safe wrappers over the few syscalls the socket fast paths make directly,
//! and over the Python buffer protocol they read from and write into.

use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use std::os::raw::c_int;

/// Whether a Python thread other than the caller exists: only such a thread could
/// release a lock that every tasklet of the caller's hub is stuck behind.
pub fn other_python_threads(_py: Python<'_>) -> bool {
    // SAFETY: with the GIL held (the token proves it) the interpreter's thread list is
    // stable while we look at its first two entries.
    unsafe {
        let head = ffi::PyInterpreterState_ThreadHead(ffi::PyInterpreterState_Get());
        !head.is_null() && !ffi::PyThreadState_Next(head).is_null()
    }
}

/// The calling thread's errno after a failed syscall.
fn errno() -> c_int {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}

/// `OSError(errno, strerror)`: Python picks the subclass (ConnectionResetError, ...).
pub fn os_error(code: c_int) -> PyErr {
    let msg = std::io::Error::from_raw_os_error(code).to_string();
    // std appends " (os error N)"; CPython's message is strerror alone.
    let msg = msg.split(" (os error").next().unwrap_or(&msg).to_string();
    PyOSError::new_err((code, msg))
}

/// recv(2) that never blocks, whatever the fd's O_NONBLOCK flag says.
pub fn recv(fd: c_int, buf: *mut u8, len: usize, flags: c_int) -> Result<usize, c_int> {
    // SAFETY: the caller guarantees buf points at len writable bytes for the call.
    let n = unsafe { libc::recv(fd, buf.cast(), len, flags | libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

/// send(2) that never blocks, whatever the fd's O_NONBLOCK flag says.
pub fn send(fd: c_int, buf: *const u8, len: usize, flags: c_int) -> Result<usize, c_int> {
    // SAFETY: the caller guarantees buf points at len readable bytes for the call.
    let n = unsafe { libc::send(fd, buf.cast(), len, flags | libc::MSG_DONTWAIT) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n as usize)
    }
}

/// A close-on-exec duplicate of `fd`.
pub fn dup_cloexec(fd: c_int) -> Result<c_int, c_int> {
    // SAFETY: fcntl with F_DUPFD_CLOEXEC only reads its integer arguments.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if n < 0 {
        Err(errno())
    } else {
        Ok(n)
    }
}

pub fn is_nonblocking(fd: c_int) -> bool {
    // SAFETY: F_GETFL only reads the file's status flags.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    flags >= 0 && flags & libc::O_NONBLOCK != 0
}

pub fn set_nonblocking(fd: c_int, on: bool) -> Result<(), c_int> {
    // SAFETY: F_GETFL/F_SETFL only read and write the file's status flags.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(errno());
        }
        let new = if on {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        if new != flags && libc::fcntl(fd, libc::F_SETFL, new) < 0 {
            return Err(errno());
        }
    }
    Ok(())
}

pub fn close(fd: c_int) {
    // SAFETY: fd is a descriptor the caller owns and no longer uses.
    unsafe { libc::close(fd) };
}

/// Bytes readable now (the FIONREAD ioctl).
pub fn bytes_readable(fd: c_int) -> Result<c_int, c_int> {
    let mut n: c_int = 0;
    // SAFETY: FIONREAD writes one int into n.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) } < 0 {
        Err(errno())
    } else {
        Ok(n)
    }
}

/// CLOCK_MONOTONIC in seconds: the clock of Python's time.monotonic() on Linux.
pub fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// A contiguous Python buffer, held (and so kept alive and unresizable) until dropped.
pub struct Buffer {
    view: Box<ffi::Py_buffer>,
}

impl Buffer {
    /// A readable buffer, as CPython's `y*` argument format takes it.
    pub fn readable(obj: &Bound<'_, PyAny>) -> PyResult<Buffer> {
        Buffer::get(obj, ffi::PyBUF_SIMPLE)
    }

    /// A writable buffer, as `w*` takes it; `func` names the method for the TypeError.
    pub fn writable(obj: &Bound<'_, PyAny>, func: &str) -> PyResult<Buffer> {
        Buffer::get(obj, ffi::PyBUF_WRITABLE).map_err(|_| {
            PyTypeError::new_err(format!(
                "{func}() argument 1 must be read-write bytes-like object, not {}",
                obj.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })
    }

    fn get(obj: &Bound<'_, PyAny>, flags: c_int) -> PyResult<Buffer> {
        // SAFETY: Py_buffer is plain C data that PyObject_GetBuffer fills in.
        let mut view: Box<ffi::Py_buffer> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: obj is live; view is writable; on failure nothing needs releasing.
        if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags) } < 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(Buffer { view })
    }

    pub fn ptr(&self) -> *mut u8 {
        self.view.buf.cast()
    }

    pub fn len(&self) -> usize {
        self.view.len as usize
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // Buffers are only made and dropped with the GIL held (inside pyfunctions).
        // SAFETY: view was filled by a successful PyObject_GetBuffer and not yet released.
        unsafe { ffi::PyBuffer_Release(&mut *self.view) };
    }
}

unsafe extern "C" {
    /// CPython's in-place resize of a bytes object with one reference (not in pyo3-ffi).
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, newsize: ffi::Py_ssize_t) -> c_int;
}

/// A new bytes object of `len` bytes whose contents the caller fills in, then trims.
pub struct BytesBuilder {
    obj: *mut ffi::PyObject,
}

impl BytesBuilder {
    pub fn new(py: Python<'_>, len: usize) -> PyResult<BytesBuilder> {
        // SAFETY: a NULL source asks for an uninitialised bytes object of len bytes.
        let obj =
            unsafe { ffi::PyBytes_FromStringAndSize(std::ptr::null(), len as ffi::Py_ssize_t) };
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        Ok(BytesBuilder { obj })
    }

    pub fn ptr(&self) -> *mut u8 {
        // SAFETY: obj is a live bytes object we own exclusively.
        unsafe { ffi::PyBytes_AS_STRING(self.obj) as *mut u8 }
    }

    /// The bytes object, cut to its first `len` bytes.
    pub fn finish(mut self, py: Python<'_>, len: usize) -> PyResult<Py<PyAny>> {
        // SAFETY: obj is ours alone (refcount 1), so resizing in place is allowed.
        if unsafe { _PyBytes_Resize(&mut self.obj, len as ffi::Py_ssize_t) } < 0 {
            self.obj = std::ptr::null_mut(); // _PyBytes_Resize freed it
            return Err(PyErr::fetch(py));
        }
        let obj = std::mem::replace(&mut self.obj, std::ptr::null_mut());
        // SAFETY: obj is a new reference we hand over.
        Ok(unsafe { Bound::from_owned_ptr(py, obj) }.unbind())
    }
}

impl Drop for BytesBuilder {
    fn drop(&mut self) {
        if !self.obj.is_null() {
            // SAFETY: we still own the reference (finish was not reached); GIL is held.
            unsafe { ffi::Py_DECREF(self.obj) };
        }
    }
}

/// read(2) on a non-blocking pipe; the count, or -1.
pub fn recv_pipe(fd: c_int, buf: &mut [u8]) -> isize {
    // SAFETY: buf is a valid writable slice.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) }
}

/// poll(2) without waiting: the ready events of each (fd, events) pair.
pub fn poll_now(fds: &mut [libc::pollfd]) -> Result<(), c_int> {
    // SAFETY: fds is a valid, writable array of fds.len() pollfd structs.
    if unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) } < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// How CPython rounds a timeout to nanoseconds (`_PyTime_round_t`).
#[derive(Clone, Copy)]
pub enum Rounding {
    /// Towards +infinity (`_PyTime_ROUND_CEILING`).
    Ceiling,
    /// Away from zero (`_PyTime_ROUND_TIMEOUT`, what time.sleep uses).
    Up,
}

/// A timeout object in seconds as CPython's `_PyTime_FromSecondsObject` reads it: a
/// float, or an int (through `__index__`), to whole nanoseconds. Same errors for NaN,
/// overflow and other types. The sign is the caller's to check.
pub fn timeout_nanoseconds(obj: &Bound<'_, PyAny>, rounding: Rounding) -> PyResult<f64> {
    use pyo3::exceptions::{PyOverflowError, PyValueError};
    use pyo3::types::PyFloat;
    if obj.is_instance_of::<PyFloat>() {
        let v: f64 = obj.extract()?;
        if v.is_nan() {
            return Err(PyValueError::new_err("Invalid value NaN (not a number)"));
        }
        let ns = v * 1e9;
        let ns = match rounding {
            Rounding::Ceiling => ns.ceil(),
            Rounding::Up if ns >= 0.0 => ns.ceil(),
            Rounding::Up => ns.floor(),
        };
        if !(ns >= i64::MIN as f64 && ns < i64::MAX as f64) {
            return Err(PyOverflowError::new_err(
                "timestamp out of range for platform time_t",
            ));
        }
        return Ok(ns);
    }
    let too_large = || PyOverflowError::new_err("timestamp too large to convert to C _PyTime_t");
    let secs = obj.extract::<i64>().map_err(|e| {
        if e.is_instance_of::<PyOverflowError>(obj.py()) {
            too_large()
        } else {
            e
        }
    })?;
    Ok(secs.checked_mul(1_000_000_000).ok_or_else(too_large)? as f64)
}
