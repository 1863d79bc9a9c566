//! What stacklessuv.signal needs from the hub: the program's wake-up fd, signal.pause()
//! for tasklets, and signalfd(2) to wait for blocked signals on the loop.

use crate::hub::Hub;
use pyo3::prelude::*;
use std::os::raw::c_int;

/// The write end of the hub's signal pipe (making the hub if needed); None off the main
/// thread, where Python has no wake-up fd.
#[pyfunction]
pub fn signal_wakeup_fd(py: Python<'_>) -> PyResult<Option<c_int>> {
    Ok(Hub::get(py)?.signal_wakeup_fd())
}

/// Sets the program's wake-up fd, which every signal byte the hub reads is copied to;
/// returns the previous one (None: this hub has no signal pipe).
#[pyfunction]
pub fn set_signal_forward(
    py: Python<'_>,
    fd: c_int,
    warn_on_full_buffer: bool,
) -> PyResult<Option<c_int>> {
    Ok(Hub::get(py)?.set_signal_forward(fd, warn_on_full_buffer))
}

/// Parks the current tasklet until a signal arrives and pending handlers have run;
/// False (without waiting) if this hub has no signal pipe.
#[pyfunction]
pub fn pause_for_signal(py: Python<'_>) -> PyResult<bool> {
    Hub::get(py)?.pause_for_signal(py)
}

/// A non-blocking, close-on-exec signalfd(2) for `signals`: readable
/// while one of them is pending for the calling thread or the process.
#[pyfunction]
pub fn signalfd(signals: Vec<c_int>) -> PyResult<c_int> {
    // SAFETY: sigemptyset initialises the zeroed set before any other use.
    let mut mask: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: mask is a valid sigset_t.
    unsafe { libc::sigemptyset(&mut mask) };
    for s in signals {
        // SAFETY: mask is initialised. Numbers sigaddset refuses (glibc's internal
        // real-time signals) are skipped, as CPython's sigset conversion skips them.
        unsafe { libc::sigaddset(&mut mask, s) };
    }
    // SAFETY: mask is initialised; -1 asks for a new fd.
    let fd = unsafe { libc::signalfd(-1, &mask, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(fd)
}

/// A program's signal handler as stacklessuv.signal installs it: what the handler
/// raises in a tasklet other than the main one goes to the main tasklet, where
/// CPython's main thread would get it. In Rust so that it adds no frame to tracebacks.
#[pyclass(module = "stacklessuv._uv", frozen)]
pub struct RoutedHandler {
    handler: Py<PyAny>,
}

#[pymethods]
impl RoutedHandler {
    #[new]
    fn new(handler: Py<PyAny>) -> Self {
        RoutedHandler { handler }
    }

    /// The program's handler (what signal.getsignal() reports, and what the hub checks).
    #[getter]
    fn _stacklessuv_handler(&self, py: Python<'_>) -> Py<PyAny> {
        self.handler.clone_ref(py)
    }

    fn __call__(&self, py: Python<'_>, signum: Py<PyAny>, frame: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let err = match self.handler.call1(py, (signum, frame)) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let Some(hub) = Hub::existing() else {
            return Err(err);
        };
        match hub.current_tasklet(py) {
            Ok(me) if !me.get().is_main => {
                hub.raise_in_main(py, err);
                Ok(py.None())
            }
            // The main tasklet; or the hub greenlet, which sends errors to main itself.
            _ => Err(err),
        }
    }
}
