//! `ThreadResult`: how a real OS thread hands a value to a tasklet. The tasklet parks
//! in `wait()`; any thread calls `set_result`/`set_exception`, which wakes the hub
//! through its uv_async handle.

use crate::handles::async_wakeup::Inbox;
use crate::hub::Hub;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Outcome {
    result: Option<PyResult<Py<PyAny>>>,
    waiting: bool,
}

#[pyclass(module = "stacklessuv._uv", frozen)]
pub struct ThreadResult {
    id: u64,
    hub_id: usize,
    inbox: Arc<Inbox>,
    outcome: Mutex<Outcome>,
}

impl ThreadResult {
    /// Thread-safe: the outcome of work done elsewhere (see handles::work).
    pub(crate) fn set_outcome(&self, result: PyResult<Py<PyAny>>) {
        let _ = self.set(result);
    }

    fn set(&self, result: PyResult<Py<PyAny>>) -> PyResult<()> {
        let notify = {
            let mut o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
            if o.result.is_some() {
                return Err(PyRuntimeError::new_err("the result is already set"));
            }
            o.result = Some(result);
            o.waiting
        };
        if notify {
            self.inbox.post(self.id);
        }
        Ok(())
    }

    fn take_ready(&self, py: Python<'_>) -> Option<PyResult<Py<PyAny>>> {
        let o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
        o.result.as_ref().map(|r| match r {
            Ok(v) => Ok(v.clone_ref(py)),
            Err(e) => Err(e.clone_ref(py)),
        })
    }
}

#[pymethods]
impl ThreadResult {
    /// Binds to the calling thread's hub; wait() must be called on that thread.
    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        let hub = Hub::get(py)?;
        Ok(ThreadResult {
            id: hub.new_waiter_id(),
            hub_id: hub.id(),
            inbox: hub.inbox(),
            outcome: Mutex::new(Outcome::default()),
        })
    }

    /// Thread-safe: store the value and wake the waiting tasklet.
    fn set_result(&self, value: Py<PyAny>) -> PyResult<()> {
        self.set(Ok(value))
    }

    /// Thread-safe: the waiting tasklet raises `exc` (an exception instance).
    fn set_exception(&self, exc: Bound<'_, PyAny>) -> PyResult<()> {
        if !exc.is_instance_of::<pyo3::exceptions::PyBaseException>() {
            return Err(PyTypeError::new_err(
                "set_exception() takes an exception instance",
            ));
        }
        self.set(Err(PyErr::from_value(exc)))
    }

    fn done(&self) -> bool {
        self.outcome
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .result
            .is_some()
    }

    /// Parks the calling tasklet until the result is set; returns it or raises it.
    fn wait(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let hub = Hub::get(py)?;
        if hub.id() != self.hub_id {
            return Err(PyRuntimeError::new_err(
                "wait() must be called on the thread that created the ThreadResult",
            ));
        }
        loop {
            {
                let mut o = self.outcome.lock().unwrap_or_else(|e| e.into_inner());
                if o.result.is_none() {
                    if o.waiting {
                        return Err(PyRuntimeError::new_err(
                            "another tasklet is already waiting",
                        ));
                    }
                    o.waiting = true;
                }
            }
            if let Some(r) = self.take_ready(py) {
                self.outcome
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .waiting = false;
                return r;
            }
            let me = hub.current_tasklet(py)?;
            let parked = hub.wait_for_thread(py, &me, self.id);
            self.outcome
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .waiting = false;
            parked?;
        }
    }
}
