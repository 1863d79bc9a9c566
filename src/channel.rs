//! `channel`: Stackless's synchronous rendezvous between tasklets.
//!
//! `balance` > 0 counts blocked senders, < 0 blocked receivers. `preference` decides who
//! runs on a rendezvous: -1 (default) the receiver, 1 the sender, 0 neither switches (the
//! woken side is appended to the run queue).

use crate::hub::Hub;
use crate::tasklet::{explode, Bomb, Place, Tasklet};
use pyo3::exceptions::{PyStopIteration, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

const SEND: i32 = 1;
const RECEIVE: i32 = -1;

#[pyclass(
    module = "stacklessuv._uv",
    name = "channel",
    subclass,
    frozen,
    weakref
)]
pub struct Channel {
    queue: RefCell<VecDeque<Py<Tasklet>>>,
    balance: Cell<isize>,
    preference: Cell<i32>,
    closing: Cell<bool>,
    schedule_all: Cell<bool>,
}

// SAFETY: only touched with the GIL held (the module is gil_used); see Tasklet.
unsafe impl Sync for Channel {}

impl Channel {
    /// Takes a blocked tasklet off this channel (kill, throw, an error sent to main).
    pub(crate) fn remove_waiter(&self, hub: &Hub, t: &Py<Tasklet>) {
        let mut q = self.queue.borrow_mut();
        if let Some(i) = q.iter().position(|w| w.is(t)) {
            q.remove(i);
            self.balance
                .set(self.balance.get() - self.balance.get().signum());
            hub.note_channel_waiter(-1);
        }
        t.get().channel.borrow_mut().take();
    }

    pub(crate) fn describe(&self) -> String {
        format!("a channel (balance {})", self.balance.get())
    }

    /// send (dir = SEND) or receive (dir = RECEIVE).
    fn action(slf: &Bound<'_, Self>, dir: i32, value: Option<Py<PyAny>>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let ch = slf.get();
        let hub = Hub::get(py)?;
        let me = hub.current_tasklet(py)?;
        let balance = ch.balance.get();
        let partner_waiting = if dir == SEND {
            balance < 0
        } else {
            balance > 0
        };

        if partner_waiting {
            let target = ch
                .queue
                .borrow_mut()
                .pop_front()
                .expect("balance says a tasklet waits");
            ch.balance.set(balance + dir as isize);
            hub.note_channel_waiter(-1);
            let t = target.get();
            t.channel.borrow_mut().take();
            let received = if dir == SEND {
                *t.tempval.borrow_mut() = value;
                py.None()
            } else {
                t.tempval.borrow_mut().take().unwrap_or_else(|| py.None())
            };
            if ch.preference.get() == -dir && !ch.schedule_all.get() {
                // The woken side runs now; we run right after it.
                hub.run_now(py, &me, target)?;
            } else {
                hub.enqueue(py, &target);
            }
            return if dir == RECEIVE {
                explode(py, received)
            } else {
                Ok(received)
            };
        }

        if ch.closing.get() {
            return Err(PyValueError::new_err(
                "Send/receive operation on a closed channel",
            ));
        }
        let t = me.get();
        if dir == SEND {
            *t.tempval.borrow_mut() = value;
        }
        t.place.set(Place::ChannelWait);
        *t.channel.borrow_mut() = Some(slf.as_unbound().clone_ref(py));
        ch.queue.borrow_mut().push_back(me.clone_ref(py));
        ch.balance.set(balance + dir as isize);
        hub.note_channel_waiter(1);
        let got = hub.park(py, &me, None)?;
        if dir == RECEIVE {
            explode(py, got)
        } else {
            Ok(py.None())
        }
    }
}

#[pymethods]
impl Channel {
    #[new]
    fn new() -> Self {
        Channel {
            queue: RefCell::new(VecDeque::new()),
            balance: Cell::new(0),
            preference: Cell::new(-1),
            closing: Cell::new(false),
            schedule_all: Cell::new(false),
        }
    }

    /// Send a value; blocks until a receiver takes it.
    fn send(slf: &Bound<'_, Self>, value: Py<PyAny>) -> PyResult<()> {
        Self::action(slf, SEND, Some(value)).map(|_| ())
    }

    /// Receive a value; blocks until a sender provides one.
    fn receive(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Self::action(slf, RECEIVE, None)
    }

    /// send_exception(exc, *args): the receiver raises exc(*args).
    #[pyo3(signature = (exc, *args))]
    fn send_exception(slf: &Bound<'_, Self>, exc: Py<PyAny>, args: Py<PyTuple>) -> PyResult<()> {
        let py = slf.py();
        let bomb = Bound::new(py, Bomb::from_parts(exc, args.into_any(), py.None()))?;
        Self::action(slf, SEND, Some(bomb.into_any().unbind())).map(|_| ())
    }

    /// send_throw(exc, val=None, tb=None): the receiver raises, as with generator.throw.
    #[pyo3(signature = (exc, val=None, tb=None))]
    fn send_throw(
        slf: &Bound<'_, Self>,
        exc: Py<PyAny>,
        val: Option<Py<PyAny>>,
        tb: Option<Py<PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let val = val.unwrap_or_else(|| py.None());
        let bomb = Bound::new(
            py,
            Bomb::from_parts(exc, val, tb.unwrap_or_else(|| py.None())),
        )?;
        Self::action(slf, SEND, Some(bomb.into_any().unbind())).map(|_| ())
    }

    /// Send every item of an iterable; returns how many were sent.
    fn send_sequence(slf: &Bound<'_, Self>, seq: &Bound<'_, PyAny>) -> PyResult<usize> {
        let mut n = 0;
        for item in seq.try_iter()? {
            Self::action(slf, SEND, Some(item?.unbind()))?;
            n += 1;
        }
        Ok(n)
    }

    fn __iter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    fn __next__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        if slf.get().is_closed() {
            return Err(PyStopIteration::new_err(()));
        }
        Self::action(slf, RECEIVE, None)
    }

    /// No new waiters; the channel is closed once the current ones are served.
    fn close(&self) {
        self.closing.set(true);
    }

    fn open(&self) {
        self.closing.set(false);
    }

    #[getter]
    fn balance(&self) -> isize {
        self.balance.get()
    }

    #[getter]
    fn closing(&self) -> bool {
        self.closing.get()
    }

    #[getter]
    fn closed(&self) -> bool {
        self.is_closed()
    }

    #[getter]
    fn get_preference(&self) -> i32 {
        self.preference.get()
    }

    #[setter]
    fn set_preference(&self, value: i32) {
        self.preference.set(value.signum());
    }

    #[getter]
    fn get_schedule_all(&self) -> bool {
        self.schedule_all.get()
    }

    #[setter]
    fn set_schedule_all(&self, value: bool) {
        self.schedule_all.set(value);
    }

    /// The first tasklet waiting on the channel, or None.
    #[getter]
    fn queue(&self, py: Python<'_>) -> Option<Py<Tasklet>> {
        self.queue.borrow().front().map(|t| t.clone_ref(py))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> String {
        let ch = slf.get();
        format!(
            "<stacklessuv.channel at {:#x} balance={} preference={}{}>",
            slf.as_ptr() as usize,
            ch.balance.get(),
            ch.preference.get(),
            if ch.is_closed() {
                " closed"
            } else if ch.closing.get() {
                " closing"
            } else {
                ""
            }
        )
    }
}

impl Channel {
    fn is_closed(&self) -> bool {
        self.closing.get() && self.balance.get() == 0
    }
}
