//! Green `_thread.lock` and `_thread.RLock`: a blocked acquire parks only the calling
//! tasklet. Waiters are served in order and a release hands the lock straight to the
//! first one (no barging), so a tasklet that loops acquire/release cannot starve them.
//! Until that waiter runs, the lock reports itself unlocked, as a real lock would right
//! after release() (threading asserts this when several threads join one thread), but
//! no one else can take it.
//! A waiter may sit on another OS thread's hub: the release then wakes it through that
//! hub's inbox (uv_async), as `ThreadResult` does.

use crate::handles::async_wakeup::Inbox;
use crate::hub::Hub;
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyTuple};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// `_thread.TIMEOUT_MAX` on this platform (whole seconds, as CPython rounds it).
const TIMEOUT_MAX: f64 = 9_223_372_036.0;
/// Beyond this CPython cannot even represent the timeout in nanoseconds.
const TIMESTAMP_MAX: f64 = 9_223_372_036.854_775;

/// One parked acquirer: where it waits and whether the lock has been handed to it.
struct Waiter {
    id: u64,
    hub_id: usize,
    inbox: Arc<Inbox>,
    granted: Arc<AtomicBool>,
}

impl Waiter {
    fn grant(&self, py: Python<'_>) {
        self.granted.store(true, Ordering::Release);
        match Hub::existing() {
            Some(hub) if hub.id() == self.hub_id => hub.wake_thread_waiter(py, self.id),
            _ => {
                self.inbox.post(self.id);
            }
        }
    }
}

#[derive(Default)]
struct State {
    locked: bool,
    /// Handed by release() to a waiter that has not run yet: locked for everyone else,
    /// but `locked()` says no.
    handing_over: bool,
    waiters: VecDeque<Waiter>,
}

/// The binary semaphore both lock kinds (and the green SimpleQueue) are built on.
#[derive(Default)]
pub(crate) struct Core {
    // Every call holds the GIL (the module is gil_used); the mutex only makes the type Sync.
    state: Mutex<State>,
}

impl Core {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_acquire(&self) -> bool {
        let mut s = self.state();
        if s.locked {
            false
        } else {
            s.locked = true;
            true
        }
    }

    fn is_locked(&self) -> bool {
        let s = self.state();
        s.locked && !s.handing_over
    }

    /// `timeout` None waits for ever, Some(0.0) only tries.
    pub(crate) fn acquire(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        if self.try_acquire() {
            return Ok(true);
        }
        if timeout == Some(0.0) {
            return Ok(false);
        }
        let deadline = timeout.map(|t| crate::sys::monotonic() + t);
        let hub = Hub::get(py)?;
        let me = hub.current_tasklet(py)?;
        let granted = Arc::new(AtomicBool::new(false));
        let id = hub.new_waiter_id();
        let other_threads_may_wake = crate::sys::other_python_threads(py);
        self.state().waiters.push_back(Waiter {
            id,
            hub_id: hub.id(),
            inbox: hub.inbox(),
            granted: granted.clone(),
        });
        loop {
            let parked = hub.wait_for_thread_until(py, &me, id, deadline, other_threads_may_wake);
            if granted.load(Ordering::Acquire) {
                self.state().handing_over = false;
                if parked.is_err() {
                    // Interrupted (kill, KeyboardInterrupt) just as the lock arrived: pass it on.
                    self.release(py);
                }
                return parked.map(|_| true);
            }
            let timed_out = deadline.is_some_and(|d| crate::sys::monotonic() >= d);
            if parked.is_err() || timed_out {
                self.state()
                    .waiters
                    .retain(|w| !Arc::ptr_eq(&w.granted, &granted));
                return parked.map(|_| false);
            }
        }
    }

    /// Hands the lock to the first waiter, or unlocks it. False if it was not locked
    /// (or is being handed over, which looks unlocked).
    pub(crate) fn release(&self, py: Python<'_>) -> bool {
        let mut s = self.state();
        if !s.locked || s.handing_over {
            return false;
        }
        match s.waiters.pop_front() {
            Some(w) => {
                s.handing_over = true;
                drop(s);
                w.grant(py);
            }
            None => s.locked = false,
        }
        true
    }

    /// After fork only the forking thread survives: start again unlocked and unwatched.
    fn reset(&self) {
        *self.state() = State::default();
    }
}

/// CPython's acquire() arguments: blocking and timeout → None (for ever) or seconds.
fn parse_acquire_args(
    blocking: Option<&Bound<'_, PyAny>>,
    timeout: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<f64>> {
    let blocking = blocking.map_or(Ok(true), |b| b.is_truthy())?;
    let seconds = match timeout {
        None => -1.0,
        Some(t) if t.is_instance_of::<PyFloat>() => {
            let v: f64 = t.extract()?;
            if v.is_nan() {
                return Err(PyValueError::new_err("Invalid value NaN (not a number)"));
            }
            v
        }
        Some(t) => t.extract::<i64>().map(|v| v as f64).map_err(|e| {
            if e.is_instance_of::<PyOverflowError>(t.py()) {
                PyOverflowError::new_err("timestamp out of range for platform time_t")
            } else {
                e
            }
        })?,
    };
    if seconds.abs() > TIMESTAMP_MAX {
        return Err(PyOverflowError::new_err(
            "timestamp out of range for platform time_t",
        ));
    }
    if !blocking {
        if seconds != -1.0 {
            return Err(PyValueError::new_err(
                "can't specify a timeout for a non-blocking call",
            ));
        }
        return Ok(Some(0.0));
    }
    if seconds == -1.0 {
        return Ok(None);
    }
    if seconds < 0.0 {
        return Err(PyValueError::new_err("timeout value must be positive"));
    }
    if seconds > TIMEOUT_MAX {
        return Err(PyOverflowError::new_err("timeout value is too large"));
    }
    Ok(Some(seconds))
}

/// What `get_ident()` returns: the OS thread's ident for its main tasklet (so
/// `threading.main_thread()` and threads made before patching keep theirs), else the
/// tasklet's address, which is unique while it lives.
pub(crate) fn current_ident(py: Python<'_>) -> PyResult<u64> {
    if let Some(hub) = Hub::existing() {
        // No tasklet in the hub greenlet, nor once greenlet is being finalized (logging's
        // weakref callbacks take its RLock at exit): there, the OS thread's ident.
        if let Ok(t) = hub.current_tasklet(py) {
            if !t.get().is_main {
                return Ok(t.as_ptr() as u64);
            }
        }
    }
    // SAFETY: PyThread_get_thread_ident has no preconditions.
    Ok(unsafe { pyo3::ffi::PyThread_get_thread_ident() } as u64)
}

fn describe(obj: &Bound<'_, PyAny>, locked: bool, extra: &str) -> PyResult<String> {
    let name = obj.get_type().fully_qualified_name()?;
    let state = if locked { "locked" } else { "unlocked" };
    Ok(format!(
        "<{state} {name} object{extra} at {:p}>",
        obj.as_ptr()
    ))
}

/// `_thread.lock` for tasklets. Named as CPython's (`_thread.lock`): once threads are
/// patched it is what `_thread.LockType` is.
#[pyclass(module = "_thread", name = "lock", frozen, weakref)]
#[derive(Default)]
pub struct Lock {
    core: Core,
}

/// allocate_lock(): a new, unlocked green lock.
#[pyfunction]
pub fn allocate_lock() -> Lock {
    Lock::default()
}

#[pymethods]
impl Lock {
    /// As in CPython, locks come from allocate_lock(), not from the type.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        Err(pyo3::exceptions::PyTypeError::new_err(
            "cannot create '_thread.lock' instances",
        ))
    }

    #[pyo3(signature = (blocking=None, timeout=None))]
    fn acquire(
        &self,
        py: Python<'_>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let timeout = parse_acquire_args(blocking, timeout)?;
        self.core.acquire(py, timeout)
    }

    #[pyo3(signature = (blocking=None, timeout=None))]
    fn acquire_lock(
        &self,
        py: Python<'_>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.acquire(py, blocking, timeout)
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.core.acquire(py, None)
    }

    fn release(&self, py: Python<'_>) -> PyResult<()> {
        if self.core.release(py) {
            Ok(())
        } else {
            Err(PyRuntimeError::new_err("release unlocked lock"))
        }
    }

    fn release_lock(&self, py: Python<'_>) -> PyResult<()> {
        self.release(py)
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release(py)
    }

    fn locked(&self) -> bool {
        self.core.is_locked()
    }

    fn locked_lock(&self) -> bool {
        self.core.is_locked()
    }

    fn _at_fork_reinit(&self) {
        self.core.reset();
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        describe(slf.as_any(), slf.get().core.is_locked(), "")
    }
}

#[derive(Default, Clone, Copy)]
struct Ownership {
    owner: u64,
    count: u64,
}

/// `_thread.RLock` for tasklets: owned by a tasklet (its `get_ident()`), not an OS thread.
#[pyclass(module = "_thread", name = "RLock", subclass, frozen, weakref)]
#[derive(Default)]
pub struct RLock {
    core: Core,
    owned: Mutex<Ownership>,
}

impl RLock {
    fn ownership(&self) -> Ownership {
        *self.owned.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_ownership(&self, o: Ownership) {
        *self.owned.lock().unwrap_or_else(|e| e.into_inner()) = o;
    }

    fn acquire_for(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let me = current_ident(py)?;
        let o = self.ownership();
        if o.count > 0 && o.owner == me {
            if o.count == u64::MAX {
                return Err(PyOverflowError::new_err("Internal lock count overflowed"));
            }
            self.set_ownership(Ownership {
                owner: me,
                count: o.count + 1,
            });
            return Ok(true);
        }
        let got = self.core.acquire(py, timeout)?;
        if got {
            self.set_ownership(Ownership {
                owner: me,
                count: 1,
            });
        }
        Ok(got)
    }
}

#[pymethods]
impl RLock {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyAny>>) -> Self {
        RLock::default()
    }

    #[pyo3(signature = (blocking=None, timeout=None))]
    fn acquire(
        &self,
        py: Python<'_>,
        blocking: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        let timeout = parse_acquire_args(blocking, timeout)?;
        self.acquire_for(py, timeout)
    }

    fn __enter__(&self, py: Python<'_>) -> PyResult<bool> {
        self.acquire_for(py, None)
    }

    fn release(&self, py: Python<'_>) -> PyResult<()> {
        let me = current_ident(py)?;
        let o = self.ownership();
        if o.count == 0 || o.owner != me {
            return Err(PyRuntimeError::new_err("cannot release un-acquired lock"));
        }
        if o.count > 1 {
            self.set_ownership(Ownership {
                owner: me,
                count: o.count - 1,
            });
        } else {
            self.set_ownership(Ownership::default());
            self.core.release(py);
        }
        Ok(())
    }

    #[pyo3(signature = (*_exc_info))]
    fn __exit__(&self, py: Python<'_>, _exc_info: &Bound<'_, PyTuple>) -> PyResult<()> {
        self.release(py)
    }

    fn _is_owned(&self, py: Python<'_>) -> PyResult<bool> {
        let o = self.ownership();
        Ok(o.count > 0 && o.owner == current_ident(py)?)
    }

    fn _recursion_count(&self, py: Python<'_>) -> PyResult<u64> {
        let o = self.ownership();
        Ok(if o.owner == current_ident(py)? {
            o.count
        } else {
            0
        })
    }

    /// For Condition.wait: release completely, returning what restores it.
    fn _release_save(&self, py: Python<'_>) -> PyResult<(u64, u64)> {
        let o = self.ownership();
        if o.count == 0 {
            return Err(PyRuntimeError::new_err("cannot release un-acquired lock"));
        }
        self.set_ownership(Ownership::default());
        self.core.release(py);
        Ok((o.count, o.owner))
    }

    fn _acquire_restore(&self, py: Python<'_>, state: (u64, u64)) -> PyResult<()> {
        self.core.acquire(py, None)?;
        self.set_ownership(Ownership {
            owner: state.1,
            count: state.0,
        });
        Ok(())
    }

    fn _at_fork_reinit(&self) {
        self.core.reset();
        self.set_ownership(Ownership::default());
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let o = slf.get().ownership();
        describe(
            slf.as_any(),
            o.count > 0,
            &format!(" owner={} count={}", o.owner, o.count),
        )
    }
}

/// get_ident(): the calling tasklet's thread identifier (see `current_ident`).
#[pyfunction]
pub fn get_ident(py: Python<'_>) -> PyResult<u64> {
    current_ident(py)
}
