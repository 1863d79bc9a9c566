//! `tasklet`, `bomb` and `TaskletExit`: the Stackless objects, each tasklet on a greenlet.

use crate::channel::Channel;
use crate::greenlet;
use crate::hub::Hub;
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PySystemExit, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple, PyType};
use std::cell::{Cell, RefCell};

create_exception!(
    _uv,
    TaskletExit,
    PySystemExit,
    "Raised in a tasklet by kill(); a tasklet that lets it escape ends quietly."
);

/// Where a tasklet is, from the scheduler's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Not scheduled and not waiting: new, paused, or suspended by a raw greenlet switch.
    Paused,
    /// In the hub's run queue.
    Queued,
    /// Running now.
    Current,
    /// Blocked in a channel's queue.
    ChannelWait,
    /// Parked until a libuv callback (timer, I/O, another thread) wakes it.
    HubWait,
    /// The main tasklet inside `run()`, waiting for the others to finish.
    RunWait,
    Dead,
}

#[pyclass(
    module = "stacklessuv._uv",
    name = "tasklet",
    subclass,
    frozen,
    weakref
)]
pub struct Tasklet {
    pub(crate) greenlet: RefCell<Option<Py<PyAny>>>,
    func: RefCell<Option<Py<PyAny>>>,
    args: RefCell<Option<Py<PyTuple>>>,
    kwargs: RefCell<Option<Py<PyDict>>>,
    pub(crate) place: Cell<Place>,
    alive: Cell<bool>,
    /// The greenlet has been switched into at least once.
    pub(crate) started: Cell<bool>,
    /// Suspended inside `Hub::park` (as opposed to inside a raw greenlet switch).
    pub(crate) parked: Cell<bool>,
    pub(crate) is_main: bool,
    /// Wraps a greenlet we did not create (the thread's main one, or a bare greenlet).
    pub(crate) foreign: bool,
    atomic: Cell<bool>,
    /// The value handed over on resume (a channel's data, a wake-up result).
    pub(crate) tempval: RefCell<Option<Py<PyAny>>>,
    /// An exception to raise on resume (kill, throw, an error forwarded to main).
    pub(crate) pending: RefCell<Option<PyErr>>,
    /// The channel this tasklet waits on, while `place == ChannelWait`.
    pub(crate) channel: RefCell<Option<Py<Channel>>>,
    /// Identity of the hub (so the thread) this tasklet belongs to.
    hub_id: usize,
    /// Per-tasklet storage for thread emulation (threading.local, the thread object);
    /// it dies with the tasklet.
    thread_data: RefCell<Option<Py<PyDict>>>,
}

// SAFETY: the module declares gil_used, so every access happens with the GIL held, and the
// hub_id check keeps a tasklet from being scheduled by another thread's hub.
unsafe impl Sync for Tasklet {}

impl Tasklet {
    /// A tasklet wrapping a greenlet we did not create (the thread's main greenlet, or a
    /// bare greenlet that blocks on the hub).
    pub(crate) fn for_greenlet(hub_id: usize, g: Py<PyAny>, is_main: bool) -> Tasklet {
        let mut t = Tasklet::blank(hub_id, is_main);
        t.foreign = true;
        *t.greenlet.borrow_mut() = Some(g);
        t.alive.set(true);
        t.started.set(true);
        t.place.set(Place::Current);
        t
    }

    fn blank(hub_id: usize, is_main: bool) -> Tasklet {
        Tasklet {
            greenlet: RefCell::new(None),
            func: RefCell::new(None),
            args: RefCell::new(None),
            kwargs: RefCell::new(None),
            place: Cell::new(Place::Paused),
            alive: Cell::new(false),
            started: Cell::new(false),
            parked: Cell::new(false),
            is_main,
            foreign: false,
            atomic: Cell::new(false),
            tempval: RefCell::new(None),
            pending: RefCell::new(None),
            channel: RefCell::new(None),
            hub_id,
            thread_data: RefCell::new(None),
        }
    }

    pub(crate) fn greenlet_is(&self, g: &Bound<'_, PyAny>) -> bool {
        self.greenlet
            .borrow()
            .as_ref()
            .is_some_and(|mine| mine.is(g))
    }

    /// What a parked tasklet gets on resume: the pending exception, else the handed value.
    pub(crate) fn take_result(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if let Some(err) = self.pending.borrow_mut().take() {
            return Err(err);
        }
        Ok(self
            .tempval
            .borrow_mut()
            .take()
            .unwrap_or_else(|| py.None()))
    }

    pub(crate) fn is_blocked(&self) -> bool {
        matches!(self.place.get(), Place::ChannelWait | Place::HubWait)
    }

    /// The hub of the calling thread, checked to be this tasklet's.
    fn own_hub(&self, py: Python<'_>) -> PyResult<&'static Hub> {
        let hub = Hub::get(py)?;
        if hub.id() != self.hub_id {
            return Err(PyRuntimeError::new_err(
                "the tasklet belongs to another thread",
            ));
        }
        Ok(hub)
    }

    /// The arguments of the first switch into the greenlet (taken: used once).
    pub(crate) fn take_call_args<'py>(
        &self,
        py: Python<'py>,
    ) -> (Bound<'py, PyTuple>, Option<Bound<'py, PyDict>>) {
        let args = self
            .args
            .borrow_mut()
            .take()
            .map_or_else(|| PyTuple::empty(py), |a| a.into_bound(py));
        let kwargs = self.kwargs.borrow_mut().take().map(|k| k.into_bound(py));
        (args, kwargs)
    }

    /// A tasklet of ours whose greenlet has run and ended.
    pub(crate) fn has_finished(&self, py: Python<'_>) -> bool {
        !self.foreign
            && self.started.get()
            && self.place.get() != Place::Dead
            && self
                .greenlet
                .borrow()
                .as_ref()
                .is_some_and(|g| !greenlet::is_active(g.bind(py)))
    }

    /// Drops everything a finished tasklet held.
    pub(crate) fn mark_dead(&self) {
        self.place.set(Place::Dead);
        self.alive.set(false);
        self.func.borrow_mut().take();
        self.args.borrow_mut().take();
        self.kwargs.borrow_mut().take();
        self.tempval.borrow_mut().take();
        self.pending.borrow_mut().take();
        self.channel.borrow_mut().take();
        // Thread-local data goes when the thread ends, as in CPython.
        let data = self.thread_data.borrow_mut().take();
        drop(data); // after the borrow ends: dropping may run Python code
    }

    fn bind_args(&self, args: Option<Py<PyTuple>>, kwargs: Option<Py<PyDict>>) {
        *self.args.borrow_mut() = args;
        *self.kwargs.borrow_mut() = kwargs;
    }

    /// Gives the tasklet a fresh greenlet (under the hub greenlet) to run its function on.
    fn make_alive(&self, py: Python<'_>, hub: &Hub) -> PyResult<()> {
        let func = self.func.borrow().as_ref().map(|f| f.clone_ref(py));
        let Some(func) = func else {
            return Err(PyTypeError::new_err("tasklet function must be a callable"));
        };
        *self.greenlet.borrow_mut() = Some(hub.new_tasklet_greenlet(py, func.bind(py))?);
        self.started.set(false);
        self.alive.set(true);
        self.place.set(Place::Paused);
        Ok(())
    }

    /// Common core of kill, throw and raise_exception.
    fn throw_in(slf: &Bound<'_, Self>, err: PyErr, pending: bool, is_kill: bool) -> PyResult<()> {
        let py = slf.py();
        let t = slf.get();
        let hub = t.own_hub(py)?;
        let me = hub.current_tasklet(py)?;
        if me.is(slf) {
            return Err(err);
        }
        if t.place.get() == Place::Dead || !t.alive.get() {
            if is_kill {
                return Ok(());
            }
            return Err(PyRuntimeError::new_err(
                "You cannot throw to a dead tasklet",
            ));
        }
        if !t.started.get() && is_kill {
            // Never ran: nothing to unwind, it simply ends.
            hub.unlink(py, slf.as_unbound());
            hub.forget(py, slf.as_unbound());
            t.mark_dead();
            return Ok(());
        }
        hub.interrupt(py, slf.as_unbound(), err, false);
        if pending {
            return Ok(());
        }
        hub.run_now(py, &me, slf.as_unbound().clone_ref(py))
            .map(|_| ())
    }
}

#[pymethods]
impl Tasklet {
    #[new]
    #[pyo3(signature = (func=None, args=None, kwargs=None))]
    fn new(
        py: Python<'_>,
        func: Option<Bound<'_, PyAny>>,
        args: Option<Bound<'_, PyAny>>,
        kwargs: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Self> {
        let hub = Hub::get(py)?;
        let t = Tasklet::blank(hub.id(), false);
        if let Some(f) = &func {
            check_callable(f)?;
            *t.func.borrow_mut() = Some(f.clone().unbind());
        }
        if args.is_some() || kwargs.is_some() {
            t.bind_args(to_tuple(args)?, kwargs.map(Bound::unbind));
            t.make_alive(py, hub)?;
        }
        Ok(t)
    }

    /// bind(func=None, args=None, kwargs=None): set the function (and, if given, the
    /// arguments, which makes the tasklet alive but paused). bind(None) unbinds.
    #[pyo3(signature = (func=None, args=None, kwargs=None))]
    fn bind<'py>(
        slf: &Bound<'py, Self>,
        func: Option<Bound<'py, PyAny>>,
        args: Option<Bound<'py, PyAny>>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, Self>> {
        let py = slf.py();
        let t = slf.get();
        let hub = t.own_hub(py)?;
        if t.is_main || (t.started.get() && t.place.get() != Place::Dead) {
            return Err(PyRuntimeError::new_err(
                "You cannot bind a tasklet that is running",
            ));
        }
        if t.place.get() == Place::Queued {
            return Err(PyRuntimeError::new_err(
                "You cannot bind a scheduled tasklet",
            ));
        }
        if func.is_none() && args.is_none() && kwargs.is_none() {
            t.mark_dead();
            t.place.set(Place::Paused);
            t.greenlet.borrow_mut().take();
            return Ok(slf.clone());
        }
        if let Some(f) = &func {
            check_callable(f)?;
            *t.func.borrow_mut() = Some(f.clone().unbind());
        }
        let with_args = args.is_some() || kwargs.is_some();
        if with_args {
            t.bind_args(to_tuple(args)?, kwargs.map(Bound::unbind));
        }
        if with_args || t.alive.get() {
            t.make_alive(py, hub)?; // a fresh greenlet for the (new) function
        }
        Ok(slf.clone())
    }

    /// setup(*args, **kwargs): bind the arguments and schedule the tasklet.
    #[pyo3(signature = (*args, **kwargs))]
    fn setup<'py>(
        slf: &Bound<'py, Self>,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, Self>> {
        let py = slf.py();
        let t = slf.get();
        let hub = t.own_hub(py)?;
        if t.func.borrow().is_none() {
            return Err(PyTypeError::new_err("tasklet function must be a callable"));
        }
        if t.alive.get() {
            return Err(PyRuntimeError::new_err("tasklet is already alive"));
        }
        t.bind_args(Some(args.unbind()), kwargs.map(Bound::unbind));
        t.make_alive(py, hub)?;
        hub.enqueue(py, slf.as_unbound());
        Ok(slf.clone())
    }

    #[pyo3(signature = (*args, **kwargs))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, Self>> {
        Self::setup(slf, args, kwargs)
    }

    /// Append to the end of the run queue (if not already there).
    fn insert(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let t = slf.get();
        let hub = t.own_hub(py)?;
        check_runnable(t)?;
        if t.place.get() == Place::Paused {
            hub.enqueue(py, slf.as_unbound());
        }
        Ok(())
    }

    /// Take the tasklet out of the run queue; it stays alive, paused.
    fn remove(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let t = slf.get();
        let hub = t.own_hub(py)?;
        if t.is_blocked() {
            return Err(PyRuntimeError::new_err(
                "You cannot remove a blocked tasklet.",
            ));
        }
        match t.place.get() {
            Place::Queued => {
                hub.unlink(py, slf.as_unbound());
                t.place.set(Place::Paused);
                Ok(())
            }
            Place::Current => Err(PyRuntimeError::new_err(
                "You cannot remove the current tasklet; use schedule_remove()",
            )),
            _ => Ok(()),
        }
    }

    /// In a forked child, for a thread-tasklet of a thread that did not survive the fork
    /// (only the forking thread does): it never runs again, and none of its code runs
    /// (no TaskletExit, no finally blocks), as with CPython's threads. Its greenlet is
    /// leaked on purpose: freeing a suspended greenlet would run it to raise GreenletExit.
    fn _forget_after_fork(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let t = slf.get();
        let hub = t.own_hub(py)?;
        if t.place.get() == Place::Current || t.is_main {
            return Err(PyRuntimeError::new_err(
                "only another thread's tasklet can be forgotten",
            ));
        }
        hub.unlink(py, slf.as_unbound());
        std::mem::forget(t.greenlet.borrow_mut().take());
        // Dead: wake-ups from its pending waits (timers, I/O, locks) find nobody to run.
        t.mark_dead();
        Ok(())
    }

    /// Run this tasklet now; the caller stays runnable and runs right after it.
    fn run(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let t = slf.get();
        let hub = t.own_hub(py)?;
        check_runnable(t)?;
        let me = hub.current_tasklet(py)?;
        if me.is(slf) {
            return Ok(());
        }
        hub.run_now(py, &me, slf.as_unbound().clone_ref(py))
            .map(|_| ())
    }

    /// Run this tasklet now; the caller is paused (not scheduled) until someone resumes it.
    fn switch(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let t = slf.get();
        let hub = t.own_hub(py)?;
        check_runnable(t)?;
        let me = hub.current_tasklet(py)?;
        if me.is(slf) {
            return Ok(());
        }
        hub.unlink(py, slf.as_unbound());
        me.get().place.set(Place::Paused);
        hub.park(py, &me, Some(slf.as_unbound().clone_ref(py)))
            .map(|_| ())
    }

    /// Raise TaskletExit in the tasklet; with pending=True it only becomes runnable.
    #[pyo3(signature = (pending=false))]
    fn kill(slf: &Bound<'_, Self>, pending: bool) -> PyResult<()> {
        let err = TaskletExit::new_err(());
        Self::throw_in(slf, err, pending, true)
    }

    /// raise_exception(exc_class, *args): raise exc_class(*args) in the tasklet, now.
    #[pyo3(signature = (exc_class, *args))]
    fn raise_exception(
        slf: &Bound<'_, Self>,
        exc_class: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let err = make_error(&exc_class, Some(&args.into_any()), None)?;
        Self::throw_in(slf, err, false, false)
    }

    /// throw(exc=None, val=None, tb=None, pending=False), like generator.throw.
    #[pyo3(signature = (exc=None, val=None, tb=None, pending=false))]
    fn throw(
        slf: &Bound<'_, Self>,
        exc: Option<Bound<'_, PyAny>>,
        val: Option<Bound<'_, PyAny>>,
        tb: Option<Bound<'_, PyAny>>,
        pending: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        let err = match exc {
            Some(e) => make_error(&e, val.as_ref(), tb.as_ref())?,
            None => TaskletExit::new_err(()),
        };
        let is_kill = err.is_instance_of::<TaskletExit>(py);
        Self::throw_in(slf, err, pending, is_kill)
    }

    /// Sets the atomic flag and returns the old one. Scheduling is cooperative, so nothing
    /// preempts a tasklet anyway; the flag is kept for code that reads it.
    fn set_atomic(&self, flag: bool) -> bool {
        self.atomic.replace(flag)
    }

    /// A dict private to this tasklet, made on first use (what threading.local and the
    /// thread emulation keep per tasklet).
    #[getter]
    fn _thread_data(&self, py: Python<'_>) -> Py<PyDict> {
        self.thread_data
            .borrow_mut()
            .get_or_insert_with(|| PyDict::new(py).unbind())
            .clone_ref(py)
    }

    #[getter]
    fn atomic(&self) -> bool {
        self.atomic.get()
    }

    #[getter]
    fn alive(&self) -> bool {
        self.alive.get()
    }

    #[getter]
    fn blocked(&self) -> bool {
        self.is_blocked()
    }

    /// In the run queue, running, or blocked (Stackless's definition).
    #[getter]
    fn scheduled(&self) -> bool {
        matches!(
            self.place.get(),
            Place::Queued | Place::Current | Place::ChannelWait | Place::HubWait
        )
    }

    #[getter]
    fn paused(&self) -> bool {
        self.alive.get() && self.place.get() == Place::Paused
    }

    #[getter]
    fn is_main(&self) -> bool {
        self.is_main
    }

    #[getter]
    fn is_current(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let hub = Hub::get(slf.py())?;
        Ok(hub.current_tasklet(slf.py())?.is(slf))
    }

    /// The greenlet this tasklet runs on (None before it is alive).
    #[getter]
    fn greenlet(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.greenlet.borrow().as_ref().map(|g| g.clone_ref(py))
    }

    #[getter]
    fn tempval(&self, py: Python<'_>) -> Py<PyAny> {
        self.tempval
            .borrow()
            .as_ref()
            .map_or_else(|| py.None(), |v| v.clone_ref(py))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let t = slf.get();
        let mut flags = vec![];
        if t.is_main {
            flags.push("main");
        }
        flags.push(match t.place.get() {
            Place::Paused if t.alive.get() => "paused",
            Place::Paused => "unbound",
            Place::Queued => "scheduled",
            Place::Current => "current",
            Place::ChannelWait => "blocked on channel",
            Place::HubWait => "waiting on the hub",
            Place::RunWait => "in run()",
            Place::Dead => "dead",
        });
        format!(
            "<stacklessuv.tasklet at {:#x} {}>",
            slf.as_ptr() as usize,
            flags.join(", ")
        )
    }
}

fn check_callable(f: &Bound<'_, PyAny>) -> PyResult<()> {
    if f.is_callable() {
        Ok(())
    } else {
        Err(PyTypeError::new_err("tasklet function must be a callable"))
    }
}

fn check_runnable(t: &Tasklet) -> PyResult<()> {
    if t.is_blocked() {
        return Err(PyRuntimeError::new_err("You cannot run a blocked tasklet"));
    }
    if !t.alive.get() {
        return Err(PyRuntimeError::new_err(
            "You cannot run an unbound or dead tasklet",
        ));
    }
    Ok(())
}

fn to_tuple(args: Option<Bound<'_, PyAny>>) -> PyResult<Option<Py<PyTuple>>> {
    match args {
        None => Ok(None),
        Some(a) => Ok(Some(
            PyTuple::new(a.py(), a.try_iter()?.collect::<PyResult<Vec<_>>>()?)?.unbind(),
        )),
    }
}

/// Builds the exception `raise exc(val)` / `raise exc` / `raise instance` would raise.
pub(crate) fn make_error(
    exc: &Bound<'_, PyAny>,
    val: Option<&Bound<'_, PyAny>>,
    tb: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyErr> {
    let instance = if let Ok(cls) = exc.cast::<PyType>() {
        if !cls.is_subclass_of::<pyo3::exceptions::PyBaseException>()? {
            return Err(PyTypeError::new_err(
                "exceptions must derive from BaseException",
            ));
        }
        match val {
            Some(v) if v.is_instance(cls.as_any())? => v.clone(),
            Some(v) if v.is_none() => cls.call0()?,
            Some(v) => match v.cast::<PyTuple>() {
                Ok(t) => cls.call1(t.clone())?,
                Err(_) => cls.call1((v,))?,
            },
            None => cls.call0()?,
        }
    } else if exc.is_instance_of::<pyo3::exceptions::PyBaseException>() {
        if val.is_some_and(|v| !v.is_none()) {
            return Err(PyTypeError::new_err(
                "instance exception may not have a separate value",
            ));
        }
        exc.clone()
    } else {
        return Err(PyTypeError::new_err(
            "exceptions must derive from BaseException",
        ));
    };
    if let Some(tb) = tb.filter(|t| !t.is_none()) {
        instance.call_method1("with_traceback", (tb,))?;
    }
    Ok(PyErr::from_value(instance))
}

/// `bomb(type, value, traceback)`: an exception in transit. A tasklet that receives one
/// from a channel raises it.
#[pyclass(module = "stacklessuv._uv", name = "bomb", frozen)]
pub struct Bomb {
    #[pyo3(get)]
    r#type: Py<PyAny>,
    #[pyo3(get)]
    value: Py<PyAny>,
    #[pyo3(get)]
    traceback: Py<PyAny>,
}

#[pymethods]
impl Bomb {
    #[new]
    #[pyo3(signature = (r#type=None, value=None, traceback=None))]
    fn new(
        py: Python<'_>,
        r#type: Option<Py<PyAny>>,
        value: Option<Py<PyAny>>,
        traceback: Option<Py<PyAny>>,
    ) -> Self {
        Bomb {
            r#type: r#type.unwrap_or_else(|| py.None()),
            value: value.unwrap_or_else(|| py.None()),
            traceback: traceback.unwrap_or_else(|| py.None()),
        }
    }

    /// Raise the carried exception here.
    fn raise_(&self, py: Python<'_>) -> PyResult<()> {
        Err(self.to_err(py))
    }
}

impl Bomb {
    pub(crate) fn from_parts(typ: Py<PyAny>, value: Py<PyAny>, tb: Py<PyAny>) -> Self {
        Bomb {
            r#type: typ,
            value,
            traceback: tb,
        }
    }

    pub(crate) fn to_err(&self, py: Python<'_>) -> PyErr {
        let typ = self.r#type.bind(py);
        let source = if typ.is_none() {
            self.value.bind(py)
        } else {
            typ
        };
        match make_error(
            source,
            Some(self.value.bind(py)).filter(|_| !typ.is_none()),
            Some(self.traceback.bind(py)),
        ) {
            Ok(e) | Err(e) => e,
        }
    }
}

/// If `value` is a bomb, its exception; otherwise the value itself.
pub(crate) fn explode(py: Python<'_>, value: Py<PyAny>) -> PyResult<Py<PyAny>> {
    match value.bind(py).cast::<Bomb>() {
        Ok(b) => Err(b.get().to_err(py)),
        Err(_) => Ok(value),
    }
}
