//! Green `_queue.SimpleQueue`: CPython's algorithm over a green lock. A `get()` on an
//! empty queue parks only the calling tasklet (the C one blocks the OS thread, and so
//! every tasklet on it). Like the C type, and unlike the stdlib's pure-Python
//! fallback, `put()` never runs Python code, so it may be called from `__del__` or a
//! signal handler in the middle of another `put()` or `get()` (bpo-14976).

use crate::lock::Core;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};
use pyo3::{PyTraverseError, PyVisit};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[pyclass(module = "_queue", name = "SimpleQueue", subclass, frozen, weakref)]
#[derive(Default)]
pub struct SimpleQueue {
    // Every call holds the GIL (the module is gil_used); the mutex only makes the type Sync.
    items: Mutex<VecDeque<Py<PyAny>>>,
    /// Held while getters wait for an item; put() releases it to wake the first of them.
    wakeup: Core,
    /// Whether a getter holds `wakeup` (CPython's `locked` field).
    locked: AtomicBool,
}

impl SimpleQueue {
    fn items(&self) -> std::sync::MutexGuard<'_, VecDeque<Py<PyAny>>> {
        self.items.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn release_wakeup(&self, py: Python<'_>) {
        if self.locked.swap(false, Ordering::AcqRel) {
            self.wakeup.release(py);
        }
    }

    /// `timeout` None waits for ever, Some(0.0) only takes what is there.
    fn take(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let deadline = timeout.map(|t| crate::sys::monotonic() + t);
        loop {
            if let Some(item) = self.items().pop_front() {
                self.release_wakeup(py);
                return Ok(item);
            }
            let left = deadline.map(|d| (d - crate::sys::monotonic()).max(0.0));
            // The first getter takes the free lock and loops; its next acquire parks it
            // (and any later getter) until put() releases the lock.
            if !self.wakeup.acquire(py, left)? {
                return Err(empty_error(py));
            }
            self.locked.store(true, Ordering::Release);
        }
    }
}

/// get()'s timeout as CPython reads it (nanoseconds, rounded up): None waits for ever.
fn parse_get_timeout(block: bool, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f64>> {
    if !block {
        return Ok(Some(0.0));
    }
    let Some(t) = timeout.filter(|t| !t.is_none()) else {
        return Ok(None);
    };
    let nanos = crate::sys::timeout_nanoseconds(t, crate::sys::Rounding::Ceiling)?;
    if nanos < 0.0 {
        return Err(PyValueError::new_err(
            "'timeout' must be a non-negative number",
        ));
    }
    Ok(Some(nanos / 1e9))
}

fn empty_error(py: Python<'_>) -> PyErr {
    match py.import("_queue").and_then(|m| m.getattr("Empty")) {
        Ok(cls) => PyErr::from_type(cls.cast_into::<PyType>().expect("_queue.Empty"), ()),
        Err(e) => e,
    }
}

#[pymethods]
impl SimpleQueue {
    #[new]
    #[pyo3(signature = (*args, **kwargs))]
    fn new(args: &Bound<'_, PyTuple>, kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        if !args.is_empty() {
            return Err(PyTypeError::new_err(
                "SimpleQueue() takes no positional arguments",
            ));
        }
        if kwargs.is_some_and(|k| !k.is_empty()) {
            return Err(PyTypeError::new_err(
                "SimpleQueue() takes no keyword arguments",
            ));
        }
        Ok(SimpleQueue::default())
    }

    /// Never blocks: `block` and `timeout` exist for Queue's signature.
    #[pyo3(signature = (item, block=None, timeout=None))]
    fn put(
        &self,
        py: Python<'_>,
        item: Py<PyAny>,
        block: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) {
        let _ = (block, timeout);
        self.items().push_back(item);
        self.release_wakeup(py);
    }

    fn put_nowait(&self, py: Python<'_>, item: Py<PyAny>) {
        self.put(py, item, None, None);
    }

    #[pyo3(signature = (block=None, timeout=None))]
    fn get(
        &self,
        py: Python<'_>,
        block: Option<&Bound<'_, PyAny>>,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let block = block.map_or(Ok(true), |b| b.is_truthy())?;
        self.take(py, parse_get_timeout(block, timeout)?)
    }

    fn get_nowait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        self.take(py, Some(0.0))
    }

    fn empty(&self) -> bool {
        self.items().is_empty()
    }

    fn qsize(&self) -> usize {
        self.items().len()
    }

    #[classmethod]
    fn __class_getitem__(cls: &Bound<'_, PyType>, item: Py<PyAny>) -> PyResult<Py<PyAny>> {
        let alias = cls.py().import("types")?.getattr("GenericAlias")?;
        Ok(alias.call1((cls, item))?.unbind())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Ok(items) = self.items.try_lock() {
            for item in items.iter() {
                visit.call(item)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        let items = std::mem::take(&mut *self.items());
        drop(items); // outside the guard: a finalizer may put() into this queue
    }
}
