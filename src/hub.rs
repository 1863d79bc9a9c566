//! The hub: one per OS thread, created on first use. It owns the libuv loop, the FIFO
//! run queue, and the hub greenlet, which polls libuv whenever no tasklet is runnable.
//!
//! Tasklets switch straight to the next runnable tasklet; only when the queue is empty
//! does control go to the hub greenlet, which blocks in `uv_run(UV_RUN_ONCE)`. libuv
//! callbacks only record a result and append the waiting tasklet to the run queue
//! (`Hub::wake`); no user code runs and no greenlet switches inside a callback.

use crate::greenlet;
use crate::handles::async_wakeup::{AsyncWakeup, Inbox};
use crate::handles::poll::{FdWatcher, SignalWakeup};
use crate::handles::timer::Timer;
use crate::handles::uv_loop::Loop;
use crate::handles::waiters::{Outcome, Waiter};
use crate::tasklet::{Place, Tasklet, TaskletExit};
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::os::raw::c_int;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Hub {
    id: usize,
    uv: Loop,
    run_queue: RefCell<VecDeque<Py<Tasklet>>>,
    /// The tasklet whose greenlet runs (or last ran) on this thread.
    current: RefCell<Py<Tasklet>>,
    main: Py<Tasklet>,
    hub_greenlet: Py<PyAny>,
    /// Tasklets left to run before libuv is polled again without blocking, so that
    /// tasklets looping on schedule() cannot starve I/O and timers.
    poll_budget: Cell<usize>,
    /// Every started, unfinished tasklet by greenlet identity, to recognise the running
    /// greenlet after a switch we did not make.
    by_greenlet: RefCell<HashMap<usize, Py<Tasklet>>>,
    schedule_callback: RefCell<Option<Py<PyAny>>>,
    channel_waiters: Cell<usize>,
    /// Tasklets parked on locks that only tasklets of this hub can release.
    local_waiters: Cell<usize>,
    signal_wakeup: RefCell<Option<SignalWakeup>>,
    async_wakeup: AsyncWakeup,
    thread_waiters: RefCell<HashMap<u64, Py<Tasklet>>>,
    next_waiter_id: Cell<u64>,
}

static NEXT_HUB_ID: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    static HUB: Cell<Option<&'static Hub>> = const { Cell::new(None) };
    static HUB_OWNER: HubOwner = const { HubOwner };
}

/// Closes the thread's loop (and so its fds) when the OS thread exits.
struct HubOwner;

impl Drop for HubOwner {
    fn drop(&mut self) {
        if let Ok(Some(hub)) = HUB.try_with(|h| h.take()) {
            hub.async_wakeup.close_inbox();
            if let Some(w) = hub.signal_wakeup.borrow_mut().take() {
                w.close();
            }
            hub.uv.close_at_thread_exit();
        }
    }
}

fn same<A, B>(a: &Py<A>, b: &Py<B>) -> bool {
    a.as_ptr() == b.as_ptr()
}

impl Hub {
    /// This thread's hub, created on first use.
    #[inline]
    pub fn get(py: Python<'_>) -> PyResult<&'static Hub> {
        match HUB.get() {
            Some(h) => Ok(h),
            None => Hub::create(py),
        }
    }

    /// This thread's hub if one exists already.
    pub fn existing() -> Option<&'static Hub> {
        HUB.get()
    }

    fn create(py: Python<'_>) -> PyResult<&'static Hub> {
        greenlet::init(py)?;
        let id = NEXT_HUB_ID.fetch_add(1, Ordering::Relaxed);
        let uv = Loop::new()?;
        let running = greenlet::current(py)?;
        let mut main_g = running.clone();
        while let Some(p) = greenlet::parent(&main_g) {
            main_g = p;
        }
        let module = py.import("stacklessuv._uv")?;
        let hub_greenlet = greenlet::new(py, &module.getattr("_hub_main")?, &main_g)?;
        let main = Py::new(py, Tasklet::for_greenlet(id, main_g.clone().unbind(), true))?;
        let mut by_greenlet = HashMap::new();
        by_greenlet.insert(main_g.as_ptr() as usize, main.clone_ref(py));
        let current = if running.is(&main_g) {
            main.clone_ref(py)
        } else {
            main.get().place.set(Place::Paused);
            let t = Py::new(
                py,
                Tasklet::for_greenlet(id, running.clone().unbind(), false),
            )?;
            by_greenlet.insert(running.as_ptr() as usize, t.clone_ref(py));
            t
        };
        let async_wakeup = AsyncWakeup::new(uv.raw())?;
        let hub: &'static Hub = Box::leak(Box::new(Hub {
            id,
            uv,
            run_queue: RefCell::new(VecDeque::new()),
            current: RefCell::new(current),
            main,
            hub_greenlet: hub_greenlet.unbind(),
            poll_budget: Cell::new(0),
            by_greenlet: RefCell::new(by_greenlet),
            schedule_callback: RefCell::new(None),
            channel_waiters: Cell::new(0),
            local_waiters: Cell::new(0),
            signal_wakeup: RefCell::new(None),
            async_wakeup,
            thread_waiters: RefCell::new(HashMap::new()),
            next_waiter_id: Cell::new(1),
        }));
        hub.uv.set_hub(hub);
        HUB.set(Some(hub));
        HUB_OWNER.with(|_| ());
        hub.install_signal_wakeup(py)?;
        Ok(hub)
    }

    /// On the main thread, route Python's signal wake-up fd to the loop, so a signal
    /// ends a blocking poll at once. A wake-up fd set before is kept as the program's
    /// (its bytes are forwarded; see stacklessuv.signal).
    fn install_signal_wakeup(&self, py: Python<'_>) -> PyResult<()> {
        // _signal, not signal: stacklessuv.signal patches signal.set_wakeup_fd.
        let signal = py.import("_signal")?;
        // Only the main OS thread may set it (ValueError elsewhere); the check is
        // CPython's own, which patched threading cannot fool.
        let old: c_int = match signal.call_method1("set_wakeup_fd", (-1,)) {
            Ok(old) => old.extract()?,
            Err(e) if e.is_instance_of::<PyValueError>(py) => return Ok(()),
            Err(e) => return Err(e),
        };
        let wakeup = match SignalWakeup::new(self.uv.raw()) {
            Ok(w) => w,
            Err(e) => {
                signal.call_method1("set_wakeup_fd", (old,))?;
                return Err(e.into());
            }
        };
        let kwargs = PyDict::new(py);
        kwargs.set_item("warn_on_full_buffer", false)?;
        if let Err(e) = signal.call_method("set_wakeup_fd", (wakeup.write_fd(),), Some(&kwargs)) {
            wakeup.close();
            return Err(e);
        }
        wakeup.set_forward(old, true);
        *self.signal_wakeup.borrow_mut() = Some(wakeup);
        Ok(())
    }

    /// In a forked child: new kernel state for the loop, and a signal pipe of its own
    /// (which keeps the program's wake-up fd and the tasklets in signal.pause()).
    pub fn after_fork_in_child(&self, py: Python<'_>) -> PyResult<()> {
        self.uv.after_fork()?;
        let old = self.signal_wakeup.borrow_mut().take();
        if let Some(old) = old {
            py.import("_signal")?.call_method1("set_wakeup_fd", (-1,))?;
            let installed = self.install_signal_wakeup(py);
            if let Some(new) = self.signal_wakeup.borrow().as_ref() {
                new.take_over(&old);
            }
            old.close();
            installed?;
        }
        Ok(())
    }

    /// The write end of this hub's signal pipe, if it has one (main thread only).
    pub fn signal_wakeup_fd(&self) -> Option<c_int> {
        self.signal_wakeup.borrow().as_ref().map(|w| w.write_fd())
    }

    /// Sets the program's wake-up fd that signal bytes are forwarded to; returns the
    /// previous one, or None if this hub has no signal pipe.
    pub fn set_signal_forward(&self, fd: c_int, warn_on_full_buffer: bool) -> Option<c_int> {
        let w = self.signal_wakeup.borrow();
        w.as_ref().map(|w| w.set_forward(fd, warn_on_full_buffer))
    }

    /// signal.pause() for tasklets: parks the current one until a signal arrives, then
    /// runs pending handlers. Returns false (nothing done) if this hub has no signal pipe.
    pub fn pause_for_signal(&self, py: Python<'_>) -> PyResult<bool> {
        let me = self.current_tasklet(py)?;
        let waiter = Waiter::readiness(me.clone_ref(py));
        {
            let w = self.signal_wakeup.borrow();
            let Some(w) = w.as_ref() else {
                return Ok(false);
            };
            w.drain();
            w.wait(waiter.clone());
        }
        let cancel = || {
            if let Some(w) = self.signal_wakeup.borrow().as_ref() {
                w.cancel(&waiter);
            }
        };
        // Handlers of signals that came before the call run now, not after the next one.
        if let Err(e) = py.check_signals() {
            cancel();
            return Err(e);
        }
        self.park_until(py, &me, None, cancel)?;
        // Woken by a poll made from a tasklet: the handlers have not run yet.
        py.check_signals()?;
        Ok(true)
    }

    pub fn id(&self) -> usize {
        self.id
    }

    pub fn uv_loop(&self) -> &Loop {
        &self.uv
    }

    pub fn main(&self, py: Python<'_>) -> Py<Tasklet> {
        self.main.clone_ref(py)
    }

    /// The tasklet running now. A greenlet we did not switch to (a bare greenlet, or a
    /// tasklet resumed by a raw `greenlet.switch`) is adopted as a tasklet here.
    #[inline]
    pub fn current_tasklet(&self, py: Python<'_>) -> PyResult<Py<Tasklet>> {
        let g = greenlet::current(py)?;
        {
            let cur = self.current.borrow();
            if cur.get().greenlet_is(&g) {
                return Ok(cur.clone_ref(py));
            }
        }
        self.adopt(py, &g)
    }

    fn adopt(&self, py: Python<'_>, g: &Bound<'_, PyAny>) -> PyResult<Py<Tasklet>> {
        if g.is(self.hub_greenlet.bind(py)) {
            return Err(PyRuntimeError::new_err(
                "tasklet operations cannot run in the hub greenlet (e.g. a signal handler that blocks)",
            ));
        }
        // Whatever we thought was running was suspended by a raw greenlet switch.
        let prev = self.current.borrow().clone_ref(py);
        if prev.get().place.get() == Place::Current {
            prev.get().place.set(Place::Paused);
        }
        let key = g.as_ptr() as usize;
        let known = self.by_greenlet.borrow().get(&key).map(|t| t.clone_ref(py));
        let t = match known {
            Some(t) => t,
            None => {
                self.by_greenlet.borrow_mut().retain(|_, t| {
                    let tk = t.get();
                    tk.greenlet.borrow().as_ref().is_some_and(|g| {
                        let g = g.bind(py);
                        !greenlet::is_started(g) || greenlet::is_active(g)
                    })
                });
                let t = Py::new(
                    py,
                    Tasklet::for_greenlet(self.id, g.clone().unbind(), false),
                )?;
                self.by_greenlet.borrow_mut().insert(key, t.clone_ref(py));
                t
            }
        };
        t.get().place.set(Place::Current);
        *self.current.borrow_mut() = t.clone_ref(py);
        Ok(t)
    }

    pub(crate) fn remember(&self, py: Python<'_>, g: &Bound<'_, PyAny>, t: &Py<Tasklet>) {
        self.by_greenlet
            .borrow_mut()
            .insert(g.as_ptr() as usize, t.clone_ref(py));
    }

    pub(crate) fn forget(&self, py: Python<'_>, t: &Py<Tasklet>) {
        if let Some(g) = t.get().greenlet.borrow().as_ref() {
            let key = g.bind(py).as_ptr() as usize;
            self.by_greenlet.borrow_mut().remove(&key);
        }
    }

    /// A greenlet that runs `func` directly (no wrapper frames on every tasklet's
    /// stack); when it returns or raises, control goes to the hub, which does the
    /// bookkeeping (see run_hub).
    pub(crate) fn new_tasklet_greenlet(
        &self,
        py: Python<'_>,
        func: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        greenlet::new(py, func, self.hub_greenlet.bind(py)).map(Bound::unbind)
    }

    /// Appends `t` to the run queue.
    pub fn enqueue(&self, py: Python<'_>, t: &Py<Tasklet>) {
        t.get().place.set(Place::Queued);
        self.run_queue.borrow_mut().push_back(t.clone_ref(py));
    }

    /// Makes a tasklet parked on the hub runnable, handing it `value`. Called from libuv
    /// callbacks; does nothing if the tasklet was already woken another way (kill, throw).
    pub fn wake(&self, py: Python<'_>, t: &Py<Tasklet>, value: Option<Py<PyAny>>) {
        let tk = t.get();
        if tk.place.get() != Place::HubWait {
            return;
        }
        *tk.tempval.borrow_mut() = value;
        self.enqueue(py, t);
    }

    /// Takes `t` out of the run queue or the channel it waits on.
    pub(crate) fn unlink(&self, py: Python<'_>, t: &Py<Tasklet>) {
        let tk = t.get();
        match tk.place.get() {
            Place::Queued => {
                let mut q = self.run_queue.borrow_mut();
                if let Some(i) = q.iter().position(|x| same(x, t)) {
                    q.remove(i);
                }
            }
            Place::ChannelWait => {
                let ch = tk.channel.borrow_mut().take();
                if let Some(ch) = ch {
                    ch.bind(py).get().remove_waiter(self, t);
                }
            }
            _ => {}
        }
    }

    /// Makes `t` runnable with `err` to raise when it resumes, wherever it was waiting.
    pub(crate) fn interrupt(&self, py: Python<'_>, t: &Py<Tasklet>, err: PyErr, front: bool) {
        let tk = t.get();
        *tk.pending.borrow_mut() = Some(err);
        self.unlink(py, t);
        tk.place.set(Place::Queued);
        let mut q = self.run_queue.borrow_mut();
        if front {
            q.push_front(t.clone_ref(py));
        } else {
            q.push_back(t.clone_ref(py));
        }
    }

    /// An exception that escaped a tasklet is raised in the main tasklet, which runs next.
    pub(crate) fn raise_in_main(&self, py: Python<'_>, err: PyErr) {
        let main = self.main.clone_ref(py);
        self.interrupt(py, &main, err, true);
    }

    pub(crate) fn note_channel_waiter(&self, delta: isize) {
        self.channel_waiters
            .set(self.channel_waiters.get().saturating_add_signed(delta));
    }

    pub fn run_queue_len(&self) -> usize {
        self.run_queue.borrow().len()
    }

    /// Next runnable tasklet. Once per pass through the queue, libuv is polled first
    /// without blocking, so ready I/O and due timers join the queue.
    #[inline(always)]
    fn pop_runnable(&self, _py: Python<'_>) -> Option<Py<Tasklet>> {
        let budget = self.poll_budget.get();
        if budget == 0 && !self.run_queue.borrow().is_empty() {
            // uv_run does nothing on a loop with no referenced work; skip the call.
            if self.uv.alive() {
                self.uv.run_nowait();
            }
            self.poll_budget.set(self.run_queue.borrow().len());
        }
        let next = self.run_queue.borrow_mut().pop_front();
        if next.is_some() {
            self.poll_budget
                .set(self.poll_budget.get().saturating_sub(1));
        }
        next
    }

    /// Switches to `next` from whatever greenlet runs now; returns when this greenlet is
    /// switched back to.
    #[inline(always)]
    fn switch_to(&self, py: Python<'_>, next: Py<Tasklet>) -> PyResult<()> {
        let t = next.get();
        let g = match t.greenlet.borrow().as_ref() {
            Some(g) => g.clone_ref(py).into_bound(py),
            None => return Ok(()),
        };
        if t.foreign && !greenlet::is_active(&g) {
            // A bare greenlet that finished behind our back.
            self.forget(py, &next);
            t.mark_dead();
            return Ok(());
        }
        t.place.set(Place::Current);
        let prev = self.current.replace(next.clone_ref(py));
        if self.schedule_callback.borrow().is_some() {
            self.call_schedule_callback(py, Some(prev), Some(next.clone_ref(py)));
        } else {
            drop(prev);
        }
        if !t.started.get() {
            self.start(py, &next, &g)
        } else if !t.parked.get() && t.pending.borrow().is_some() {
            throw_into(py, t, &g)
        } else {
            greenlet::switch(py, &g, None).map(|_| ())
        }
    }

    /// First switch into a tasklet's greenlet. Kept out of switch_to: every switch's
    /// frame is copied by greenlet on each switch, so the common path stays small.
    #[inline(never)]
    #[cold]
    fn start(&self, py: Python<'_>, next: &Py<Tasklet>, g: &Bound<'_, PyAny>) -> PyResult<()> {
        let t = next.get();
        t.started.set(true);
        self.remember(py, g, next);
        if let Some(err) = t.pending.borrow_mut().take() {
            // Thrown at before it ever ran: it ends with that exception.
            self.tasklet_finished(py, next, Err(err));
            return Ok(());
        }
        let (args, kwargs) = t.take_call_args(py);
        greenlet::start(py, g, &args, kwargs.as_ref()).map(|_| ())
    }

    fn switch_to_hub(&self, py: Python<'_>) -> PyResult<()> {
        greenlet::switch(py, self.hub_greenlet.bind(py), None).map(|_| ())
    }

    /// Suspends `me` (the current tasklet, whose `place` the caller has already set) and
    /// runs `first`, or else the next runnable tasklet, or else the hub. Returns what
    /// `me` was handed when it is resumed, or raises what was thrown into it.
    #[inline(always)]
    pub fn park(
        &self,
        py: Python<'_>,
        me: &Py<Tasklet>,
        first: Option<Py<Tasklet>>,
    ) -> PyResult<Py<PyAny>> {
        let t = me.get();
        t.parked.set(true);
        let mut first = first;
        let outcome = loop {
            let next = first.take().or_else(|| self.pop_runnable(py));
            let step = match next {
                Some(n) if same(&n, me) => {
                    t.place.set(Place::Current);
                    *self.current.borrow_mut() = n;
                    Ok(())
                }
                Some(n) if n.get().started.get() => self.switch_to(py, n),
                Some(n) => {
                    // A new greenlet inherits the Python recursion depth of the greenlet
                    // that starts it; the hub's stack is shallow, tasklet stacks may not be.
                    n.get().place.set(Place::Queued);
                    self.run_queue.borrow_mut().push_front(n);
                    self.poll_budget.set(self.poll_budget.get() + 1);
                    self.switch_to_hub(py)
                }
                None => self.switch_to_hub(py),
            };
            if let Err(e) = step {
                break Err(e);
            }
            // A greenlet that finished and returned to its parent can land here too;
            // only a switch made by the scheduler (which sets current) wakes us.
            if t.place.get() == Place::Current && same(&self.current.borrow(), me) {
                break Ok(());
            }
        };
        t.parked.set(false);
        match outcome {
            Ok(()) => t.take_result(py),
            Err(e) => {
                // Thrown straight into this greenlet (greenlet.throw, or its collection).
                self.unlink(py, me);
                t.place.set(Place::Current);
                *self.current.borrow_mut() = me.clone_ref(py);
                Err(e)
            }
        }
    }

    /// Stackless's run(): `target` runs now and the caller `me` stays runnable right
    /// after it; the queue rotates so that what followed `target` still follows it.
    pub fn run_now(
        &self,
        py: Python<'_>,
        me: &Py<Tasklet>,
        target: Py<Tasklet>,
    ) -> PyResult<Py<PyAny>> {
        {
            let mut q = self.run_queue.borrow_mut();
            me.get().place.set(Place::Queued);
            match q.iter().position(|t| same(t, &target)) {
                Some(i) => {
                    q.push_back(me.clone_ref(py));
                    q.rotate_left(i + 1);
                    q.pop_back();
                }
                None => q.push_front(me.clone_ref(py)),
            }
        }
        self.park(py, me, Some(target))
    }

    /// schedule() (`remove` false) and schedule_remove() (`remove` true); returns the
    /// calling tasklet.
    pub fn schedule(&self, py: Python<'_>, remove: bool) -> PyResult<Py<Tasklet>> {
        let me = self.current_tasklet(py)?;
        if remove {
            me.get().place.set(Place::Paused);
        } else {
            self.enqueue(py, &me);
        }
        self.park(py, &me, None)?;
        Ok(me)
    }

    /// run(): serve every other tasklet until none is runnable and nothing waits on the hub.
    pub fn run(&self, py: Python<'_>) -> PyResult<()> {
        let me = self.current_tasklet(py)?;
        if !me.get().is_main {
            return Err(PyRuntimeError::new_err(
                "run() must be called from the main tasklet",
            ));
        }
        me.get().place.set(Place::RunWait);
        self.park(py, &me, None).map(|_| ())
    }

    /// Sleeps the current tasklet on a libuv timer (rounded up to whole milliseconds, so
    /// it never wakes early); sleep(0) is schedule().
    pub fn sleep(&self, py: Python<'_>, seconds: f64) -> PyResult<()> {
        if seconds.is_nan() {
            return Err(PyValueError::new_err("Invalid value NaN (not a number)"));
        }
        if seconds < 0.0 {
            return Err(PyValueError::new_err("sleep length must be non-negative"));
        }
        if seconds == 0.0 {
            return self.schedule(py, false).map(|_| ());
        }
        // +1: the loop clock is truncated to the millisecond.
        let ms = (seconds * 1000.0).ceil() + 1.0;
        if ms >= (u64::MAX / 2) as f64 {
            return Err(PyOverflowError::new_err("sleep length is too large"));
        }
        let me = self.current_tasklet(py)?;
        let timer = Timer::new(self.uv.raw())?;
        if let Err(e) = timer.start(ms as u64, me.clone_ref(py)) {
            timer.close();
            return Err(e.into());
        }
        me.get().place.set(Place::HubWait);
        let result = self.park(py, &me, None);
        timer.close();
        result.map(|_| ())
    }

    /// Parks `me`, whose waiters the caller has already queued on handles, until one
    /// of them wakes it or `deadline` (time.monotonic() seconds) passes; `unqueue` then
    /// takes the waiters off their handles whatever happened. The caller reads the
    /// waiters' outcomes; none set means the deadline passed.
    #[inline(always)]
    pub fn park_until(
        &self,
        py: Python<'_>,
        me: &Py<Tasklet>,
        deadline: Option<f64>,
        unqueue: impl FnOnce(),
    ) -> PyResult<()> {
        let timer = match deadline.map(|d| d - crate::sys::monotonic()) {
            None => None,
            Some(left) if left <= 0.0 => {
                unqueue();
                return Ok(());
            }
            Some(left) => {
                let t = match Timer::new(self.uv.raw()) {
                    Ok(t) => t,
                    Err(e) => {
                        unqueue();
                        return Err(e.into());
                    }
                };
                // +1: the loop clock is truncated to the millisecond.
                if let Err(e) = t.start((left * 1000.0).ceil() as u64 + 1, me.clone_ref(py)) {
                    t.close();
                    unqueue();
                    return Err(e.into());
                }
                Some(t)
            }
        };
        me.get().place.set(Place::HubWait);
        let parked = self.park(py, me, None);
        unqueue();
        if let Some(t) = timer {
            t.close();
        }
        parked.map(|_| ())
    }

    /// poll(2) for tasklets: the (fd, revents) pairs that are ready, waiting on the hub
    /// until one is or `deadline` passes (None: no limit). Every wait goes through a
    /// watcher on a private dup, so an fd that one of our sockets' handles already
    /// watches can be polled too; the answer always comes from poll(2) itself.
    pub fn poll_fds(
        &self,
        py: Python<'_>,
        fds: &[(c_int, i16)],
        deadline: Option<f64>,
        wait: bool,
    ) -> PyResult<Vec<(c_int, i16)>> {
        let mut pfds: Vec<libc::pollfd> = fds
            .iter()
            .map(|&(fd, events)| libc::pollfd {
                fd,
                events,
                revents: 0,
            })
            .collect();
        let ready = |pfds: &mut Vec<libc::pollfd>| -> PyResult<Vec<(c_int, i16)>> {
            loop {
                match crate::sys::poll_now(pfds) {
                    Ok(()) => break,
                    Err(libc::EINTR) => py.check_signals()?,
                    Err(e) => return Err(crate::sys::os_error(e)),
                }
            }
            Ok(pfds
                .iter()
                .filter(|p| p.revents != 0)
                .map(|p| (p.fd, p.revents))
                .collect())
        };
        let now = ready(&mut pfds)?;
        if !now.is_empty() || !wait {
            return Ok(now);
        }
        let me = self.current_tasklet(py)?;
        let mut watchers: Vec<(FdWatcher, c_int, Rc<Waiter>, Rc<Waiter>)> = Vec::new();
        let mut queued: PyResult<()> = Ok(());
        for &(fd, events) in fds {
            let dup = match crate::sys::dup_cloexec(fd) {
                Ok(d) => d,
                Err(e) => {
                    queued = Err(crate::sys::os_error(e));
                    break;
                }
            };
            let w = match FdWatcher::new(self.uv.raw(), dup) {
                Ok(w) => w,
                Err(e) => {
                    crate::sys::close(dup);
                    queued = Err(e.into());
                    break;
                }
            };
            let r = Waiter::readiness(me.clone_ref(py));
            let x = Waiter::readiness(me.clone_ref(py));
            let readable = events & (libc::POLLIN | libc::POLLPRI) != 0;
            let started = w.wait_each(readable, events & libc::POLLOUT != 0, &r, &x);
            watchers.push((w, dup, r, x));
            if let Err(e) = started {
                queued = Err(e.into());
                break;
            }
        }
        let parked = match queued {
            Ok(()) => self.park_until(py, &me, deadline, || {}),
            Err(e) => Err(e),
        };
        for (w, dup, r, x) in watchers {
            w.cancel_each(&r, &x);
            w.close();
            crate::sys::close(dup);
        }
        parked?;
        ready(&mut pfds)
    }

    /// Parks the current tasklet until a raw fd is readable and/or writable; returns
    /// (readable, writable).
    pub fn wait_fd(
        &self,
        py: Python<'_>,
        fd: c_int,
        read: bool,
        write: bool,
    ) -> PyResult<(bool, bool)> {
        let me = self.current_tasklet(py)?;
        let watcher = FdWatcher::new(self.uv.raw(), fd)?;
        let r = Waiter::readiness(me.clone_ref(py));
        let w = Waiter::readiness(me.clone_ref(py));
        let queued = watcher.wait_each(read, write, &r, &w);
        let result = match queued {
            Err(e) => Err(e.into()),
            Ok(()) => self.park_until(py, &me, None, || watcher.cancel_each(&r, &w)),
        };
        watcher.close();
        result?;
        let ready = |x: &Waiter| match x.outcome() {
            Some(Outcome::Failed(e)) => Err(crate::sys::os_error(-e)),
            o => Ok(o.is_some()),
        };
        Ok((ready(&r)?, ready(&w)?))
    }

    /// A fresh id for a tasklet that will wait for another OS thread.
    pub fn new_waiter_id(&self) -> u64 {
        let id = self.next_waiter_id.get();
        self.next_waiter_id.set(id + 1);
        id
    }

    pub fn inbox(&self) -> Arc<Inbox> {
        self.async_wakeup.inbox()
    }

    /// Parks `me` until another thread posts `id` to the inbox (or an exception arrives).
    pub fn wait_for_thread(&self, py: Python<'_>, me: &Py<Tasklet>, id: u64) -> PyResult<()> {
        self.wait_for_thread_until(py, me, id, None, true)
    }

    /// Like `wait_for_thread`, but also returns once `deadline` (monotonic seconds) passes.
    /// `wake_thread_waiter(id)` wakes it too, so a waiter on this hub needs no uv_async.
    /// Unless `other_threads_may_wake`, the wait does not keep the loop alive: with
    /// nothing else left to run, the hub reports a deadlock instead of hanging.
    pub fn wait_for_thread_until(
        &self,
        py: Python<'_>,
        me: &Py<Tasklet>,
        id: u64,
        deadline: Option<f64>,
        other_threads_may_wake: bool,
    ) -> PyResult<()> {
        self.thread_waiters
            .borrow_mut()
            .insert(id, me.clone_ref(py));
        if other_threads_may_wake {
            self.async_wakeup.add_waiter();
        } else {
            self.local_waiters.set(self.local_waiters.get() + 1);
        }
        let result = self.park_until(py, me, deadline, || {});
        self.thread_waiters.borrow_mut().remove(&id);
        if other_threads_may_wake {
            self.async_wakeup.remove_waiter();
        } else {
            self.local_waiters.set(self.local_waiters.get() - 1);
        }
        result
    }

    pub(crate) fn wake_thread_waiter(&self, py: Python<'_>, id: u64) {
        let t = self
            .thread_waiters
            .borrow()
            .get(&id)
            .map(|t| t.clone_ref(py));
        if let Some(t) = t {
            self.wake(py, &t, None);
        }
    }

    pub fn set_schedule_callback(&self, cb: Option<Py<PyAny>>) -> Option<Py<PyAny>> {
        self.schedule_callback.replace(cb)
    }

    pub fn schedule_callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.schedule_callback
            .borrow()
            .as_ref()
            .map(|c| c.clone_ref(py))
    }

    fn call_schedule_callback(
        &self,
        py: Python<'_>,
        prev: Option<Py<Tasklet>>,
        next: Option<Py<Tasklet>>,
    ) {
        let cb = self
            .schedule_callback
            .borrow()
            .as_ref()
            .map(|c| c.clone_ref(py));
        if let Some(cb) = cb {
            if let Err(e) = cb.call1(py, (prev, next)) {
                e.write_unraisable(py, Some(cb.bind(py)));
            }
        }
    }

    /// Bookkeeping when a tasklet's function returns or raises.
    pub(crate) fn tasklet_finished(&self, py: Python<'_>, t: &Py<Tasklet>, result: PyResult<()>) {
        self.forget(py, t);
        t.get().mark_dead();
        t.get().greenlet.borrow_mut().take();
        if self.schedule_callback.borrow().is_some() {
            self.call_schedule_callback(py, Some(t.clone_ref(py)), None);
        }
        if let Err(e) = result {
            if !e.is_instance_of::<TaskletExit>(py) && !greenlet::is_greenlet_exit(py, &e) {
                self.raise_in_main(py, e);
            }
        }
    }

    /// The hub greenlet's loop: run tasklets; with none runnable, block in libuv; with
    /// nothing left to wait for, wake the main tasklet (run() returns, or a deadlock).
    pub(crate) fn run_hub(&self, py: Python<'_>) -> PyResult<()> {
        loop {
            if let Some(next) = self.pop_runnable(py) {
                let result = self.switch_to(py, next);
                // Back here because a tasklet parked with nothing runnable, or because
                // a tasklet's greenlet ended (returned or raised) and came to its parent.
                let cur = self.current.borrow().clone_ref(py);
                if cur.get().has_finished(py) {
                    self.tasklet_finished(py, &cur, result);
                } else if let Err(e) = result {
                    e.write_unraisable(py, None);
                }
                continue;
            }
            if !self.uv.alive() {
                if !self.signal_handler_may_wake(py) {
                    self.out_of_work(py);
                    continue;
                }
                // As CPython would, sleep until a signal: its handler may wake someone.
                self.hold_loop_for_signals(true);
                self.uv.run_once_detached(py);
                self.hold_loop_for_signals(false);
            } else {
                self.uv.run_once_detached(py);
            }
            self.poll_budget.set(self.run_queue.borrow().len());
            // Python's signal handlers run here, right after the signal ended the poll.
            if let Err(e) = py.check_signals() {
                self.raise_in_main(py, e);
            }
        }
    }

    fn hold_loop_for_signals(&self, hold: bool) {
        if let Some(w) = self.signal_wakeup.borrow().as_ref() {
            w.hold_loop(hold);
        }
    }

    /// With nothing else left that could wake a blocked main tasklet, whether a Python
    /// signal handler the program installed could (`stop.wait()` until SIGTERM sets
    /// `stop`). Not with only default handlers: CPython would hang until Ctrl-C, and a
    /// deadlock error says more. stacklessuv.signal wraps handlers; the wrapper keeps
    /// the program's handler as `_stacklessuv_handler`.
    fn signal_handler_may_wake(&self, py: Python<'_>) -> bool {
        if self.signal_wakeup.borrow().is_none() || self.main.get().place.get() == Place::RunWait {
            return false;
        }
        let installed = || -> PyResult<bool> {
            let signal = py.import("_signal")?;
            let default_int = signal.getattr("default_int_handler")?;
            for signum in signal.call_method0("valid_signals")?.try_iter()? {
                let mut handler = signal.call_method1("getsignal", (signum?,))?;
                if let Ok(inner) = handler.getattr("_stacklessuv_handler") {
                    handler = inner;
                }
                if handler.is_callable() && !handler.is(&default_int) {
                    return Ok(true);
                }
            }
            Ok(false)
        };
        installed().unwrap_or(false)
    }

    fn out_of_work(&self, py: Python<'_>) {
        let main = self.main.clone_ref(py);
        if main.get().place.get() == Place::RunWait {
            self.enqueue(py, &main);
            return;
        }
        let err = PyRuntimeError::new_err(self.deadlock_message(py));
        self.raise_in_main(py, err);
    }

    fn deadlock_message(&self, py: Python<'_>) -> String {
        let m = self.main.get();
        let mut others = self.channel_waiters.get();
        let waits_on = match m.place.get() {
            Place::ChannelWait => {
                others = others.saturating_sub(1);
                m.channel
                    .borrow()
                    .as_ref()
                    .map_or_else(|| "a channel".to_string(), |c| c.bind(py).get().describe())
            }
            Place::Paused => {
                "nothing: it is paused (schedule_remove() or a raw greenlet switch)".into()
            }
            Place::HubWait if self.local_waiters.get() > 0 => {
                others += self.local_waiters.get() - 1;
                "a lock (or the hub), and no tasklet is left that could release it".into()
            }
            Place::HubWait => "the hub, but no handle is left that could wake it".into(),
            _ => "nothing".into(),
        };
        format!(
            "Deadlock: the last runnable tasklet cannot be blocked. The main tasklet waits on \
             {waits_on}; {others} other tasklet(s) are blocked on channels or locks, and nothing \
             waits on I/O, timers or other threads."
        )
    }
}

/// Suspended in a raw greenlet switch, not in park(): raise at that point.
#[inline(never)]
#[cold]
fn throw_into(py: Python<'_>, t: &Tasklet, g: &Bound<'_, PyAny>) -> PyResult<()> {
    let err = t
        .pending
        .borrow_mut()
        .take()
        .expect("checked by the caller");
    greenlet::throw(py, g, err).map(|_| ())
}

/// The hub greenlet's `run` (whatever the first switch passes is ignored).
#[pyfunction]
#[pyo3(signature = (*_args))]
pub(crate) fn _hub_main(py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<()> {
    Hub::get(py)?.run_hub(py)
}
