//! `stacklessuv._uv`: the hub (a libuv loop per OS thread), Stackless tasklets and
//! channels on greenlet, and the libuv handle kinds the Python package builds on.

mod channel;
mod greenlet;
mod handles;
mod hub;
mod lock;
mod resolver;
mod signals;
mod simple_queue;
mod socket_io;
mod sys;
mod tasklet;
mod thread_result;

use hub::Hub;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use tasklet::Tasklet;

/// schedule(retval=None): yield to the other runnable tasklets; returns retval (or the
/// current tasklet, as Stackless does, when none is given).
#[pyfunction]
#[pyo3(signature = (retval=None))]
fn schedule(py: Python<'_>, retval: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    let me = Hub::get(py)?.schedule(py, false)?;
    Ok(retval.unwrap_or_else(|| me.into_any()))
}

/// schedule_remove(retval=None): like schedule(), but the caller is paused, not requeued.
#[pyfunction]
#[pyo3(signature = (retval=None))]
fn schedule_remove(py: Python<'_>, retval: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    let me = Hub::get(py)?.schedule(py, true)?;
    Ok(retval.unwrap_or_else(|| me.into_any()))
}

/// run(): run the other tasklets until none is runnable and nothing waits on I/O,
/// timers or threads. Tasklets blocked only on channels do not keep it running.
#[pyfunction]
fn run(py: Python<'_>) -> PyResult<()> {
    Hub::get(py)?.run(py)
}

#[pyfunction]
fn getcurrent(py: Python<'_>) -> PyResult<Py<Tasklet>> {
    Hub::get(py)?.current_tasklet(py)
}

#[pyfunction]
fn getmain(py: Python<'_>) -> PyResult<Py<Tasklet>> {
    Ok(Hub::get(py)?.main(py))
}

/// Runnable tasklets, the current one included.
#[pyfunction]
fn getruncount(py: Python<'_>) -> PyResult<usize> {
    Ok(Hub::get(py)?.run_queue_len() + 1)
}

/// sleep(seconds): park the current tasklet on a libuv timer; sleep(0) is schedule().
/// Arguments and errors are time.sleep()'s, which it replaces.
#[pyfunction]
#[pyo3(signature = (*args, **kwargs))]
fn sleep(
    py: Python<'_>,
    args: &Bound<'_, PyTuple>,
    kwargs: Option<&Bound<'_, PyDict>>,
) -> PyResult<()> {
    use pyo3::exceptions::{PyTypeError, PyValueError};
    if kwargs.is_some_and(|k| !k.is_empty()) {
        return Err(PyTypeError::new_err(
            "time.sleep() takes no keyword arguments",
        ));
    }
    if args.len() != 1 {
        return Err(PyTypeError::new_err(format!(
            "time.sleep() takes exactly one argument ({} given)",
            args.len()
        )));
    }
    let ns = sys::timeout_nanoseconds(&args.get_item(0)?, sys::Rounding::Up)?;
    if ns < 0.0 {
        return Err(PyValueError::new_err("sleep length must be non-negative"));
    }
    Hub::get(py)?.sleep(py, ns / 1e9)
}

/// wait_fd(fd, readable=True, writable=False): park the current tasklet until the raw
/// fd is ready (through a libuv poll handle); returns (readable, writable).
#[pyfunction]
#[pyo3(signature = (fd, readable=true, writable=false))]
fn wait_fd(py: Python<'_>, fd: i32, readable: bool, writable: bool) -> PyResult<(bool, bool)> {
    if !(readable || writable) {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "wait for readable, writable or both",
        ));
    }
    Hub::get(py)?.wait_fd(py, fd, readable, writable)
}

/// poll_fds(pairs, timeout=None): poll(2) for tasklets. `pairs` are (fd, events) with
/// select.POLL* events; returns the ready (fd, revents) pairs, parking the tasklet
/// until one is ready or the timeout (seconds; None: none, 0: no waiting) passes.
#[pyfunction]
#[pyo3(signature = (pairs, timeout=None))]
fn poll_fds(
    py: Python<'_>,
    pairs: Vec<(i32, i16)>,
    timeout: Option<f64>,
) -> PyResult<Vec<(i32, i16)>> {
    let wait = timeout.is_none_or(|t| t > 0.0);
    let deadline = timeout.filter(|t| *t > 0.0).map(|t| sys::monotonic() + t);
    Hub::get(py)?.poll_fds(py, &pairs, deadline, wait)
}

/// set_schedule_callback(callable or None): callable(prev, next) runs on every switch
/// (next is None when prev finished). Returns the previous callback.
#[pyfunction]
fn set_schedule_callback(
    py: Python<'_>,
    callback: Option<Py<PyAny>>,
) -> PyResult<Option<Py<PyAny>>> {
    Ok(Hub::get(py)?.set_schedule_callback(callback.filter(|c| !c.is_none(py))))
}

#[pyfunction]
fn get_schedule_callback(py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
    Ok(Hub::get(py)?.schedule_callback(py))
}

/// Registered with os.register_at_fork: gives a forked child a working hub.
#[pyfunction]
fn _after_fork_in_child(py: Python<'_>) -> PyResult<()> {
    match Hub::existing() {
        Some(hub) => hub.after_fork_in_child(py),
        None => Ok(()),
    }
}

/// Whether the calling thread's libuv loop has referenced handles or requests: what
/// keeps run() going besides runnable tasklets.
#[pyfunction]
fn _loop_alive(py: Python<'_>) -> PyResult<bool> {
    Ok(Hub::get(py)?.uv_loop().alive())
}

#[pymodule(gil_used = true)]
fn _uv(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Tasklet>()?;
    m.add_class::<channel::Channel>()?;
    m.add_class::<tasklet::Bomb>()?;
    m.add_class::<thread_result::ThreadResult>()?;
    m.add_class::<socket_io::SocketIO>()?;
    m.add_class::<lock::Lock>()?;
    m.add_class::<lock::RLock>()?;
    m.add_class::<simple_queue::SimpleQueue>()?;
    m.add_function(wrap_pyfunction!(lock::get_ident, m)?)?;
    m.add_function(wrap_pyfunction!(lock::allocate_lock, m)?)?;
    m.add("TaskletExit", py.get_type::<tasklet::TaskletExit>())?;
    m.add_function(wrap_pyfunction!(schedule, m)?)?;
    m.add_function(wrap_pyfunction!(schedule_remove, m)?)?;
    m.add_function(wrap_pyfunction!(run, m)?)?;
    m.add_function(wrap_pyfunction!(getcurrent, m)?)?;
    m.add_function(wrap_pyfunction!(getmain, m)?)?;
    m.add_function(wrap_pyfunction!(getruncount, m)?)?;
    m.add_function(wrap_pyfunction!(sleep, m)?)?;
    m.add_function(wrap_pyfunction!(wait_fd, m)?)?;
    m.add_function(wrap_pyfunction!(poll_fds, m)?)?;
    m.add_function(wrap_pyfunction!(resolver::getaddrinfo, m)?)?;
    m.add_function(wrap_pyfunction!(resolver::run_in_threadpool, m)?)?;
    m.add_function(wrap_pyfunction!(set_schedule_callback, m)?)?;
    m.add_function(wrap_pyfunction!(get_schedule_callback, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(_loop_alive, m)?)?;
    m.add_function(wrap_pyfunction!(hub::_hub_main, m)?)?;
    m.add_function(wrap_pyfunction!(signals::signal_wakeup_fd, m)?)?;
    m.add_function(wrap_pyfunction!(signals::set_signal_forward, m)?)?;
    m.add_function(wrap_pyfunction!(signals::pause_for_signal, m)?)?;
    m.add_function(wrap_pyfunction!(signals::signalfd, m)?)?;
    m.add_class::<signals::RoutedHandler>()?;
    m.add_function(wrap_pyfunction!(greenlet::_switch_bench, m)?)?;
    Ok(())
}
