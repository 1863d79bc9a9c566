//! `SocketIO`: the blocking machinery behind one green socket. Every operation tries
//! the non-blocking syscall first and parks the calling tasklet only on EAGAIN.
//!
//! The socket object owns its fd, as in CPython; libuv handles watch it but never own
//! it, and are always released before the fd closes (close, detach, collection via
//! the socket's __del__, thread exit). One handle per fd number is all libuv allows, so:
//! - TCP: a uv_tcp_t on the fd; reads complete straight into a caller's buffer
//!   (recv_into), other read waits are readiness only. Writes wait on a uv_poll_t on a
//!   private dup, made only when a write first blocks.
//! - UDP: a uv_udp_t on the fd for read readiness; writes as TCP.
//! - anything else (AF_UNIX, raw, pipes): one uv_poll_t on the fd, both directions.
//!
//! Handles live in the loop of the thread that first waits. Another thread waits
//! through a temporary watcher on a dup in its own loop, and a close from another
//! thread hands the release to the handles' own thread and waits for it.

use crate::handles::async_wakeup::Inbox;
use crate::handles::poll::{FdWatcher, READABLE, WRITABLE};
use crate::handles::tcp::TcpStream;
use crate::handles::udp::UdpSocket;
use crate::handles::waiters::{Outcome, Waiter};
use crate::hub::Hub;
use crate::sys::{self, os_error, Buffer, BytesBuilder};
use crate::tasklet::Tasklet;
use pyo3::exceptions::{PyBlockingIOError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::cell::{Cell, RefCell};
use std::os::raw::c_int;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tcp,
    Udp,
    Other,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Dir {
    Read,
    Write,
}

#[pyclass(module = "stacklessuv._uv", name = "SocketIO", frozen)]
pub struct SocketIO {
    fd: Cell<c_int>,
    kind: Kind,
    /// Negative: blocking (None); 0: non-blocking; positive: seconds.
    timeout: Cell<f64>,
    handles: RefCell<Option<Handles>>,
    /// The reader whose turn it is (see `defers_to_queued_readers`): the tasklet last
    /// woken because the socket became readable, by identity (0: none).
    read_turn: Cell<usize>,
    /// Tickets for recv calls that wait (see `Waiter::ticket`); the last one given.
    last_ticket: Cell<u64>,
}

/// The libuv side of one socket, all in the loop of the hub `hub_id`.
struct Handles {
    hub_id: usize,
    inbox: Arc<Inbox>,
    tcp: Option<TcpStream>,
    udp: Option<UdpSocket>,
    /// The poll handle and the fd it watches: the socket's own (Other) or our dup.
    watcher: Option<(FdWatcher, c_int)>,
    /// The dup we own, if `watcher` watches one.
    dup: Option<c_int>,
}

// SAFETY: handles are only touched on their own hub's thread: other threads use
// temporary watchers, and hand closing over through the inbox.
unsafe impl Send for Handles {}

impl Handles {
    /// Wakes every waiter with EBADF and releases the handles (on their own thread);
    /// the socket's fd stays open, our dup is closed.
    fn shut(self) {
        let ebadf = -libc::EBADF;
        if let Some((w, _)) = self.watcher {
            w.fail_all(ebadf);
            w.close();
        }
        if let Some(fd) = self.dup {
            sys::close(fd);
        }
        if let Some(t) = self.tcp {
            t.fail_all(ebadf);
            t.release();
        }
        if let Some(u) = self.udp {
            u.fail_all(ebadf);
            u.release();
        }
    }

    /// The handles' thread has ended and closing its loop released them: only our dup
    /// is left to close.
    fn abandon(self) {
        if let Some(fd) = self.dup {
            sys::close(fd);
        }
        std::mem::forget(self.tcp);
        std::mem::forget(self.udp);
        std::mem::forget(self.watcher);
    }
}

/// A release handed to the handles' own thread. Its outcome: Some(true) once run,
/// Some(false) if dropped unrun (that thread's loop is closing and releases every
/// handle itself); the handles are then forgotten, never closed from here.
struct Release {
    handles: Option<Handles>,
    done: Arc<(Mutex<Option<bool>>, Condvar)>,
}

impl Release {
    fn run(mut self) {
        if let Some(h) = self.handles.take() {
            h.shut();
        }
        self.report(true);
    }

    fn report(&self, ran: bool) {
        let (lock, cvar) = &*self.done;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = Some(ran);
        cvar.notify_all();
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if let Some(h) = self.handles.take() {
            h.abandon();
            self.report(false);
        }
    }
}

// SAFETY: only touched with the GIL held (the module is gil_used); see Handles for
// the libuv side.
unsafe impl Sync for SocketIO {}
// SAFETY: as above.
unsafe impl Send for SocketIO {}

impl Drop for SocketIO {
    fn drop(&mut self) {
        // Normally released already by close() (the socket's close or __del__). A wait for
        // another thread's hub must not hold the GIL that hub may need.
        let released = Python::try_attach(|py| self.drop_handles(Some(py)))
            .unwrap_or_else(|| self.drop_handles(None));
        debug_assert!(released);
    }
}

fn timeout_error() -> PyErr {
    PyTimeoutError::new_err("timed out")
}

fn would_block() -> PyErr {
    PyBlockingIOError::new_err((libc::EAGAIN, "Resource temporarily unavailable"))
}

/// A tasklet's identity for `read_turn`: compared, never dereferenced.
fn tasklet_key(t: &Py<Tasklet>) -> usize {
    t.as_ptr() as usize
}

impl SocketIO {
    fn nonblocking(&self) -> bool {
        self.timeout.get() == 0.0
    }

    fn start_deadline(&self) -> Option<f64> {
        let t = self.timeout.get();
        if t > 0.0 {
            Some(sys::monotonic() + t)
        } else {
            None
        }
    }

    fn check_open(&self) -> PyResult<c_int> {
        let fd = self.fd.get();
        if fd < 0 {
            Err(os_error(libc::EBADF))
        } else {
            Ok(fd)
        }
    }

    /// FIFO among readers: whether this recv must let the readers queued on the socket go
    /// first (it then queues behind them). Only a recv that would wait if it found
    /// nothing defers, only to readers already queued, and never the reader just woken
    /// for its turn, whether by recv's own wait or by a separate wait_readable(): if
    /// woken readers deferred, each could defer to another that defers too, forever.
    /// A non-blocking recv never waits, so it never queues and never defers: it reports
    /// what the kernel has, as CPython's does. A turn is good for one recv: checking
    /// ends it, whoever's it was.
    fn defers_to_queued_readers(&self, py: Python<'_>, flags: c_int) -> PyResult<bool> {
        let turn = self.read_turn.take();
        if self.nonblocking() || flags & libc::MSG_DONTWAIT != 0 || !self.readers_waiting() {
            return Ok(false);
        }
        Ok(turn == 0 || turn != tasklet_key(&Hub::get(py)?.current_tasklet(py)?))
    }

    fn readers_waiting(&self) -> bool {
        self.handles
            .borrow()
            .as_ref()
            .and_then(|h| h.tcp.as_ref())
            .is_some_and(|t| t.has_readers())
    }

    /// Our handles if they live in `hub`'s loop (made on first use); None if they
    /// live in another thread's loop.
    fn home_handles(&self, hub: &Hub) -> PyResult<bool> {
        let mut h = self.handles.borrow_mut();
        match h.as_ref() {
            Some(x) => Ok(x.hub_id == hub.id()),
            None => {
                *h = Some(Handles {
                    hub_id: hub.id(),
                    inbox: hub.inbox(),
                    tcp: None,
                    udp: None,
                    watcher: None,
                    dup: None,
                });
                Ok(true)
            }
        }
    }

    /// The handle for `dir` waits, created on first use.
    fn ensure_handle(&self, hub: &Hub, dir: Dir) -> PyResult<()> {
        let fd = self.check_open()?;
        let mut guard = self.handles.borrow_mut();
        let h = guard.as_mut().expect("home_handles ran first");
        let l = hub.uv_loop().raw();
        // uv_tcp_open/uv_udp_open set O_NONBLOCK; the flag stays what CPython's mode says
        // (our own syscalls pass MSG_DONTWAIT, and libuv reads only once per wake-up).
        let restore = |r: Result<(), crate::handles::handle::UvError>, was_nonblocking: bool| {
            if !was_nonblocking {
                let _ = sys::set_nonblocking(fd, false);
            }
            r
        };
        match (dir, self.kind) {
            (Dir::Read, Kind::Tcp) if h.tcp.is_none() => {
                let was = sys::is_nonblocking(fd);
                restore(TcpStream::open(l, fd).map(|t| h.tcp = Some(t)), was)?
            }
            (Dir::Read, Kind::Udp) if h.udp.is_none() => {
                let was = sys::is_nonblocking(fd);
                restore(UdpSocket::open(l, fd).map(|u| h.udp = Some(u)), was)?
            }
            (Dir::Read, Kind::Tcp | Kind::Udp) => {}
            _ if h.watcher.is_some() => {}
            (_, Kind::Other) => h.watcher = Some((FdWatcher::new(l, fd)?, fd)),
            (Dir::Write, _) => {
                let dup = sys::dup_cloexec(fd).map_err(os_error)?;
                match FdWatcher::new(l, dup) {
                    Ok(w) => {
                        h.watcher = Some((w, dup));
                        h.dup = Some(dup);
                    }
                    Err(e) => {
                        sys::close(dup);
                        return Err(e.into());
                    }
                }
            }
        }
        Ok(())
    }

    /// Releases the handles on their own thread: now, or by handing the release to
    /// that thread's hub and waiting for it. Returns false if that thread did not answer
    /// in time: the fd must then not be closed (libuv may still watch it).
    fn drop_handles(&self, py: Option<Python<'_>>) -> bool {
        let Some(h) = self.handles.borrow_mut().take() else {
            return true;
        };
        if Hub::existing().map(|hub| hub.id()) == Some(h.hub_id) {
            h.shut();
            return true;
        }
        let inbox = h.inbox.clone();
        let done = Arc::new((Mutex::new(None), Condvar::new()));
        let task = Release {
            handles: Some(h),
            done: done.clone(),
        };
        // If the task cannot be posted, or is dropped unrun, Release's Drop reports it.
        let _ = inbox.post_task(Box::new(move || task.run()));
        let wait = move || {
            let (lock, cvar) = &*done;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (guard, _) = cvar
                .wait_timeout_while(guard, Duration::from_secs(5), |outcome| outcome.is_none())
                .unwrap_or_else(|e| e.into_inner());
            guard.is_some()
        };
        match py {
            Some(py) => py.detach(wait), // that hub may need the GIL to wake its waiters
            None => wait(),
        }
    }

    /// Parks the current tasklet until the fd is ready for `dir`, or libuv has read
    /// into `buf` (a completion read, TCP only). Ok(None) means the deadline passed.
    /// A reader woken because the fd is readable gets the read turn.
    #[inline(always)]
    fn wait(
        &self,
        py: Python<'_>,
        dir: Dir,
        buf: Option<(*mut u8, usize)>,
        deadline: Option<f64>,
        ticket: u64,
    ) -> PyResult<Option<Outcome>> {
        let hub = Hub::get(py)?;
        let me = hub.current_tasklet(py)?;
        let w = match buf {
            Some((p, n)) => Waiter::read_into(me.clone_ref(py), p, n),
            None => Waiter::readiness(me.clone_ref(py)),
        };
        w.set_ticket(ticket);
        let outcome = if self.home_handles(hub)? {
            self.wait_home(py, hub, &me, dir, &w, deadline)?
        } else {
            self.wait_away(py, hub, &me, dir, &w, deadline)?
        };
        if dir == Dir::Read && outcome == Some(Outcome::Ready) {
            self.read_turn.set(tasklet_key(&me));
        }
        Ok(outcome)
    }

    /// A wait in the loop that holds our handles: queued on the socket's own handle.
    #[inline(always)]
    fn wait_home(
        &self,
        py: Python<'_>,
        hub: &Hub,
        me: &Py<Tasklet>,
        dir: Dir,
        w: &Rc<Waiter>,
        deadline: Option<f64>,
    ) -> PyResult<Option<Outcome>> {
        let events = if dir == Dir::Read { READABLE } else { WRITABLE };
        self.ensure_handle(hub, dir)?;
        {
            let guard = self.handles.borrow();
            let h = guard.as_ref().expect("made above");
            match (dir, &h.tcp, &h.udp, &h.watcher) {
                (Dir::Read, Some(t), _, _) if self.kind == Kind::Tcp => t.wait(w.clone())?,
                (Dir::Read, _, Some(u), _) if self.kind == Kind::Udp => u.wait(w.clone())?,
                (_, _, _, Some((x, _))) => x.wait(events, w.clone())?,
                _ => unreachable!("ensure_handle made the handle for this direction"),
            }
        }
        let cancel = |w: &Rc<Waiter>| {
            if let Some(h) = self.handles.borrow().as_ref() {
                if let Some(t) = &h.tcp {
                    t.cancel(w);
                }
                if let Some(u) = &h.udp {
                    u.cancel(w);
                }
                if let Some((x, _)) = &h.watcher {
                    x.cancel(events, w);
                }
            }
        };
        park_waiter(py, hub, me, w, deadline, cancel)
    }

    /// A wait from a thread whose loop does not hold our handles: a temporary watcher
    /// on a dup, in this thread's own loop.
    fn wait_away(
        &self,
        py: Python<'_>,
        hub: &Hub,
        me: &Py<Tasklet>,
        dir: Dir,
        w: &Rc<Waiter>,
        deadline: Option<f64>,
    ) -> PyResult<Option<Outcome>> {
        let fd = sys::dup_cloexec(self.check_open()?).map_err(os_error)?;
        let events = if dir == Dir::Read { READABLE } else { WRITABLE };
        let result = FdWatcher::new(hub.uv_loop().raw(), fd)
            .map_err(PyErr::from)
            .and_then(|x| {
                let r = x
                    .wait(events, w.clone())
                    .map_err(PyErr::from)
                    .and_then(|_| park_waiter(py, hub, me, w, deadline, |w| x.cancel(events, w)));
                x.close();
                r
            });
        sys::close(fd);
        // A completion read was not possible here: report readiness and let the caller retry.
        result.map(|o| o.map(|_| Outcome::Ready))
    }

    /// Waits for readiness in `dir`; errors for timeouts, non-blocking mode and close.
    #[inline(always)]
    fn wait_ready(&self, py: Python<'_>, dir: Dir, deadline: Option<f64>) -> PyResult<()> {
        if self.nonblocking() {
            return Err(would_block());
        }
        match self.wait(py, dir, None, deadline, 0)? {
            None => Err(timeout_error()),
            Some(Outcome::Failed(e)) => Err(os_error(-e)),
            Some(_) => Ok(()),
        }
    }

    /// recv into `buf`. In blocking mode MSG_WAITALL waits for all `len` bytes (or EOF),
    /// as the kernel would on a blocking fd; with a timeout CPython's fd is non-blocking
    /// too, so it returns what one read gives.
    ///
    /// `callers_buffer`: `buf` belongs to the caller (recv_into), so a TCP wait may be a
    /// completion read into it. recv() allocates its buffer only once data is there, so
    /// an idle connection holds no buffer while it waits.
    fn recv_raw(
        &self,
        py: Python<'_>,
        buf: *mut u8,
        len: usize,
        flags: c_int,
        callers_buffer: bool,
    ) -> PyResult<usize> {
        if flags & libc::MSG_WAITALL == 0 || self.timeout.get() >= 0.0 {
            return self.recv_once(py, buf, len, flags, callers_buffer);
        }
        let mut got = 0;
        while got < len {
            let n = self.recv_once(py, buf.wrapping_add(got), len - got, flags, callers_buffer)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok(got)
    }

    /// recv() into this thread's scratch buffer, then a bytes object of exactly the size
    /// read: no large allocation per call, and none held while waiting. Ok(None): it
    /// would block.
    fn recv_via_scratch(
        &self,
        py: Python<'_>,
        len: usize,
        flags: c_int,
    ) -> PyResult<Option<Py<PyAny>>> {
        const SCRATCH_MAX: usize = 256 * 1024;
        thread_local! {
            static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        let via_scratch = if len > SCRATCH_MAX {
            None
        } else {
            SCRATCH.with(|cell| match cell.try_borrow_mut() {
                Ok(mut buf) => {
                    if buf.len() < len {
                        buf.resize(len, 0);
                    }
                    Some(match self.try_recv(py, buf.as_mut_ptr(), len, flags) {
                        Ok(Some(n)) => Ok(Some(PyBytes::new(py, &buf[..n]).into_any().unbind())),
                        Ok(None) => Ok(None),
                        Err(e) => Err(e),
                    })
                }
                Err(_) => None, // re-entered from a signal handler: use a buffer of its own
            })
        };
        match via_scratch {
            Some(result) => result,
            None => {
                let out = BytesBuilder::new(py, len)?;
                match self.try_recv(py, out.ptr(), len, flags)? {
                    Some(n) => out.finish(py, n).map(Some),
                    None => Ok(None),
                }
            }
        }
    }

    /// The recv syscall, unless the caller must let queued readers go first. None: it
    /// would block (or must queue).
    fn try_recv(
        &self,
        py: Python<'_>,
        buf: *mut u8,
        len: usize,
        flags: c_int,
    ) -> PyResult<Option<usize>> {
        if self.defers_to_queued_readers(py, flags)? {
            return Ok(None);
        }
        loop {
            let fd = self.check_open()?;
            match sys::recv(fd, buf, len, flags) {
                Ok(n) => return Ok(Some(n)),
                Err(libc::EINTR) => py.check_signals()?,
                Err(e) if e == libc::EAGAIN || e == libc::EWOULDBLOCK => return Ok(None),
                Err(e) => return Err(os_error(e)),
            }
        }
    }

    /// One recv: the syscall first, then a completion read (into a caller's buffer) or a
    /// readiness wait.
    fn recv_once(
        &self,
        py: Python<'_>,
        buf: *mut u8,
        len: usize,
        flags: c_int,
        callers_buffer: bool,
    ) -> PyResult<usize> {
        let deadline = self.start_deadline();
        // One ticket for the whole call: woken for nothing, it queues again in its place.
        let mut ticket = 0;
        loop {
            if let Some(n) = self.try_recv(py, buf, len, flags)? {
                return Ok(n);
            }
            if self.nonblocking() || flags & libc::MSG_DONTWAIT != 0 {
                return Err(would_block());
            }
            if ticket == 0 {
                ticket = self.last_ticket.get() + 1;
                self.last_ticket.set(ticket);
            }
            let completion = callers_buffer && self.kind == Kind::Tcp && flags == 0 && len > 0;
            let into = completion.then_some((buf, len));
            let outcome = self.wait(py, Dir::Read, into, deadline, ticket)?;
            match outcome {
                None => return Err(timeout_error()),
                Some(Outcome::Read(n)) => return Ok(n),
                Some(Outcome::Failed(e)) => return Err(os_error(-e)),
                Some(Outcome::Ready) => {} // our turn: retry
            }
        }
    }

    /// One send: the syscall first, then a write-readiness wait.
    fn send_raw(
        &self,
        py: Python<'_>,
        data: *const u8,
        len: usize,
        flags: c_int,
        deadline: Option<f64>,
    ) -> PyResult<usize> {
        loop {
            let fd = self.check_open()?;
            match sys::send(fd, data, len, flags) {
                Ok(n) => return Ok(n),
                Err(libc::EINTR) => {
                    py.check_signals()?;
                    continue;
                }
                Err(e) if e == libc::EAGAIN || e == libc::EWOULDBLOCK => {}
                Err(e) => return Err(os_error(e)),
            }
            if flags & libc::MSG_DONTWAIT != 0 {
                return Err(would_block());
            }
            self.wait_ready(py, Dir::Write, deadline)?;
        }
    }
}

/// Parks `me` on `w` (already queued), bounded by `deadline`; `cancel` unqueues it
/// afterwards whatever woke it. None: the deadline passed.
#[inline(always)]
fn park_waiter(
    py: Python<'_>,
    hub: &Hub,
    me: &Py<Tasklet>,
    w: &Rc<Waiter>,
    deadline: Option<f64>,
    cancel: impl FnOnce(&Rc<Waiter>),
) -> PyResult<Option<Outcome>> {
    hub.park_until(py, me, deadline, || cancel(w))?;
    Ok(w.outcome())
}

#[pymethods]
impl SocketIO {
    /// SocketIO(fd, kind): kind is "tcp", "udp" or "other".
    #[new]
    fn new(fd: c_int, kind: &str) -> PyResult<Self> {
        let kind = match kind {
            "tcp" => Kind::Tcp,
            "udp" => Kind::Udp,
            "other" => Kind::Other,
            _ => {
                return Err(PyValueError::new_err(
                    "kind must be 'tcp', 'udp' or 'other'",
                ))
            }
        };
        Ok(SocketIO {
            fd: Cell::new(fd),
            kind,
            timeout: Cell::new(-1.0),
            handles: RefCell::new(None),
            read_turn: Cell::new(0),
            last_ticket: Cell::new(0),
        })
    }

    /// None (blocking), 0.0 (non-blocking) or seconds; validated by the caller.
    #[getter]
    fn get_timeout(&self) -> Option<f64> {
        let t = self.timeout.get();
        if t < 0.0 {
            None
        } else {
            Some(t)
        }
    }

    #[setter]
    fn set_timeout(&self, t: Option<f64>) {
        self.timeout.set(t.unwrap_or(-1.0));
    }

    /// time.monotonic() by which the current operation must finish, or None.
    fn deadline(&self) -> Option<f64> {
        self.start_deadline()
    }

    #[getter]
    fn fileno(&self) -> c_int {
        self.fd.get()
    }

    /// True once a libuv tcp/udp handle watches this socket.
    #[getter]
    fn has_stream_handle(&self) -> bool {
        self.handles
            .borrow()
            .as_ref()
            .is_some_and(|h| h.tcp.is_some() || h.udp.is_some())
    }

    #[pyo3(signature = (bufsize, flags=0))]
    fn recv(&self, py: Python<'_>, bufsize: isize, flags: c_int) -> PyResult<Py<PyAny>> {
        if bufsize < 0 {
            return Err(PyValueError::new_err("negative buffersize in recv"));
        }
        let len = bufsize as usize;
        if flags & libc::MSG_WAITALL != 0 && self.timeout.get() < 0.0 {
            let out = BytesBuilder::new(py, len)?;
            let n = self.recv_raw(py, out.ptr(), len, flags, false)?;
            return out.finish(py, n);
        }
        // The buffer exists only around the syscall: an idle connection holds none.
        let deadline = self.start_deadline();
        loop {
            if let Some(got) = self.recv_via_scratch(py, len, flags)? {
                return Ok(got);
            }
            if flags & libc::MSG_DONTWAIT != 0 {
                return Err(would_block());
            }
            self.wait_ready(py, Dir::Read, deadline)?; // gives us the read turn
        }
    }

    #[pyo3(signature = (buffer, nbytes=0, flags=0))]
    fn recv_into(
        &self,
        py: Python<'_>,
        buffer: &Bound<'_, PyAny>,
        nbytes: isize,
        flags: c_int,
    ) -> PyResult<usize> {
        let buf = Buffer::writable(buffer, "recv_into")?;
        if nbytes < 0 {
            return Err(PyValueError::new_err("negative buffersize in recv_into"));
        }
        let want = if nbytes == 0 {
            buf.len()
        } else {
            nbytes as usize
        };
        if want > buf.len() {
            return Err(PyValueError::new_err(
                "buffer too small for requested bytes",
            ));
        }
        self.recv_raw(py, buf.ptr(), want, flags, true)
    }

    #[pyo3(signature = (data, flags=0))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, flags: c_int) -> PyResult<usize> {
        let buf = Buffer::readable(data)?;
        let deadline = self.start_deadline();
        self.send_raw(py, buf.ptr(), buf.len(), flags, deadline)
    }

    /// Sends everything; the timeout bounds the whole call, not each chunk.
    #[pyo3(signature = (data, flags=0))]
    fn sendall(&self, py: Python<'_>, data: &Bound<'_, PyAny>, flags: c_int) -> PyResult<()> {
        let buf = Buffer::readable(data)?;
        let deadline = self.start_deadline();
        let mut sent = 0;
        loop {
            // SAFETY-free pointer arithmetic: sent <= len, so this stays inside the buffer.
            let p = buf.ptr().wrapping_add(sent);
            sent += self.send_raw(py, p, buf.len() - sent, flags, deadline)?;
            if sent >= buf.len() {
                return Ok(());
            }
            // Let signal handlers run between chunks, as CPython does.
            py.check_signals()?;
        }
    }

    /// Parks until readable (or raises TimeoutError / BlockingIOError / EBADF).
    #[pyo3(signature = (deadline=None))]
    fn wait_readable(&self, py: Python<'_>, deadline: Option<f64>) -> PyResult<()> {
        self.wait_ready(py, Dir::Read, deadline)
    }

    /// Parks until writable (or raises TimeoutError / BlockingIOError / EBADF).
    #[pyo3(signature = (deadline=None))]
    fn wait_writable(&self, py: Python<'_>, deadline: Option<f64>) -> PyResult<()> {
        self.wait_ready(py, Dir::Write, deadline)
    }

    /// Sets or clears O_NONBLOCK on the fd (for calls that cannot take MSG_DONTWAIT).
    fn set_fd_nonblocking(&self, on: bool) -> PyResult<()> {
        sys::set_nonblocking(self.check_open()?, on).map_err(os_error)
    }

    /// Drops the write watcher and its private dup if nobody waits on it: after a
    /// connect, a client socket should cost one fd, not two.
    fn drop_write_watcher(&self) {
        let mut guard = self.handles.borrow_mut();
        let Some(h) = guard.as_mut() else { return };
        if h.dup.is_none() || h.watcher.as_ref().is_some_and(|(w, _)| w.has_waiters()) {
            return;
        }
        if let Some((w, _)) = h.watcher.take() {
            w.close();
        }
        if let Some(fd) = h.dup.take() {
            sys::close(fd);
        }
    }

    /// FIONREAD: bytes readable now. Nothing is ever read ahead, so the kernel's count
    /// is the whole truth.
    fn bytes_readable(&self) -> PyResult<c_int> {
        sys::bytes_readable(self.check_open()?).map_err(os_error)
    }

    /// Before the socket closes or detaches its fd: wakes every waiter with EBADF and
    /// releases the handles, so libuv no longer watches the fd. Returns False only if the
    /// handles' thread did not answer: then the fd must be left open (not closed).
    fn close(&self, py: Python<'_>) -> bool {
        let released = self.drop_handles(Some(py));
        self.fd.set(-1);
        released
    }
}
