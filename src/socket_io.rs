//! `SocketIO`: the blocking machinery behind one green socket. Every operation tries
//! the non-blocking syscall first and parks the calling tasklet only on EAGAIN.
//!
//! The socket object owns its fd, as in CPython. Every libuv handle here watches a
//! private dup of it, which this object owns and closes with the handle; so closing
//! or collecting the socket in any order never leaves libuv watching a closed or
//! reused fd number, and a thread that ends (closing its loop) never closes the
//! socket under someone else.
//!
//! Handles by kind, created on the first wait, in the loop of the thread that waits:
//! - TCP: a uv_tcp_t; reads complete straight into the caller's buffer, other read
//!   waits are readiness only.
//! - UDP: a uv_udp_t; read waits are readiness only.
//! - anything else (AF_UNIX, raw, pipes): reads wait on the write watcher's kind.
//! - writes, and reads of other kinds: a uv_poll_t.
//!
//! Another thread waits through a temporary watcher in its own loop, and a close from
//! another thread is handed to the handles' own thread.

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
use std::cell::{Cell, RefCell};
use std::os::raw::c_int;
use std::rc::Rc;
use std::sync::Arc;

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
}

/// The libuv side of one socket, all in the loop of the hub `hub_id`.
struct Handles {
    hub_id: usize,
    inbox: Arc<Inbox>,
    tcp: Option<(TcpStream, c_int)>,
    udp: Option<(UdpSocket, c_int)>,
    watcher: Option<(FdWatcher, c_int)>,
}

// SAFETY: handles are only touched on their own hub's thread: other threads use
// temporary watchers, and hand closing over through the inbox.
unsafe impl Send for Handles {}

impl Handles {
    /// Wakes every waiter with EBADF, closes the handles and their dups.
    fn shut(self) {
        let ebadf = -libc::EBADF;
        if let Some((w, fd)) = self.watcher {
            w.fail_all(ebadf);
            w.close();
            sys::close(fd);
        }
        if let Some((t, _)) = self.tcp {
            t.fail_all(ebadf); // closing the handle closes its dup
            t.close();
        }
        if let Some((u, _)) = self.udp {
            u.fail_all(ebadf);
            u.close();
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
        self.drop_handles();
    }
}

fn timeout_error() -> PyErr {
    PyTimeoutError::new_err("timed out")
}

fn would_block() -> PyErr {
    PyBlockingIOError::new_err((libc::EAGAIN, "Resource temporarily unavailable"))
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

    fn readers_waiting(&self) -> bool {
        self.handles
            .borrow()
            .as_ref()
            .and_then(|h| h.tcp.as_ref())
            .is_some_and(|(t, _)| t.has_readers())
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
                });
                Ok(true)
            }
        }
    }

    /// The handle for `dir` waits, created (on a fresh dup) on first use.
    fn ensure_handle(&self, hub: &Hub, dir: Dir) -> PyResult<()> {
        let fd = self.check_open()?;
        let mut guard = self.handles.borrow_mut();
        let h = guard.as_mut().expect("home_handles ran first");
        let l = hub.uv_loop().raw();
        let use_stream = dir == Dir::Read && self.kind != Kind::Other;
        let present = if use_stream {
            h.tcp.is_some() || h.udp.is_some()
        } else {
            h.watcher.is_some()
        };
        if present {
            return Ok(());
        }
        let dup = sys::dup_cloexec(fd).map_err(os_error)?;
        let made = match (use_stream, self.kind) {
            (true, Kind::Tcp) => TcpStream::open(l, dup).map(|t| h.tcp = Some((t, dup))),
            (true, _) => UdpSocket::open(l, dup).map(|u| h.udp = Some((u, dup))),
            (false, _) => FdWatcher::new(l, dup).map(|w| h.watcher = Some((w, dup))),
        };
        made.map_err(|e| {
            sys::close(dup);
            e.into()
        })
    }

    /// Shuts the handles down on their own thread (now, or through its hub's inbox).
    fn drop_handles(&self) {
        let Some(h) = self.handles.borrow_mut().take() else {
            return;
        };
        let here = Hub::existing().map(|hub| hub.id());
        if here == Some(h.hub_id) {
            h.shut();
            return;
        }
        let inbox = h.inbox.clone();
        if let Err(task) = inbox.post_task(Box::new(move || h.shut())) {
            // That thread has ended; closing its loop closed the handles and their dups.
            std::mem::forget(task);
        }
    }

    /// Parks the current tasklet until the fd is ready for `dir`, or libuv has read
    /// into `buf` (a completion read, TCP only). Ok(None) means the deadline passed.
    fn wait(
        &self,
        py: Python<'_>,
        dir: Dir,
        buf: Option<(*mut u8, usize)>,
        deadline: Option<f64>,
    ) -> PyResult<Option<Outcome>> {
        let hub = Hub::get(py)?;
        let me = hub.current_tasklet(py)?;
        let w = match buf {
            Some((p, n)) => Waiter::read_into(me.clone_ref(py), p, n),
            None => Waiter::readiness(me.clone_ref(py)),
        };
        if !self.home_handles(hub)? {
            return self.wait_away(py, hub, &me, dir, &w, deadline);
        }
        let events = if dir == Dir::Read { READABLE } else { WRITABLE };
        self.ensure_handle(hub, dir)?;
        {
            let guard = self.handles.borrow();
            let h = guard.as_ref().expect("made above");
            match (dir, &h.tcp, &h.udp, &h.watcher) {
                (Dir::Read, Some((t, _)), _, _) if self.kind == Kind::Tcp => t.wait(w.clone())?,
                (Dir::Read, _, Some((u, _)), _) if self.kind == Kind::Udp => u.wait(w.clone())?,
                (_, _, _, Some((x, _))) => x.wait(events, w.clone())?,
                _ => unreachable!("ensure_handle made the handle for this direction"),
            }
        }
        let cancel = |w: &Rc<Waiter>| {
            if let Some(h) = self.handles.borrow().as_ref() {
                if let Some((t, _)) = &h.tcp {
                    t.cancel(w);
                }
                if let Some((u, _)) = &h.udp {
                    u.cancel(w);
                }
                if let Some((x, _)) = &h.watcher {
                    x.cancel(events, w);
                }
            }
        };
        park_waiter(py, hub, &me, &w, deadline, cancel)
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
    fn wait_ready(&self, py: Python<'_>, dir: Dir, deadline: Option<f64>) -> PyResult<()> {
        if self.nonblocking() {
            return Err(would_block());
        }
        match self.wait(py, dir, None, deadline)? {
            None => Err(timeout_error()),
            Some(Outcome::Failed(e)) => Err(os_error(-e)),
            Some(_) => Ok(()),
        }
    }

    /// recv into `buf`. In blocking mode MSG_WAITALL waits for all `len` bytes (or EOF),
    /// as the kernel would on a blocking fd; with a timeout CPython's fd is non-blocking
    /// too, so it returns what one read gives.
    fn recv_raw(&self, py: Python<'_>, buf: *mut u8, len: usize, flags: c_int) -> PyResult<usize> {
        if flags & libc::MSG_WAITALL == 0 || self.timeout.get() >= 0.0 {
            return self.recv_once(py, buf, len, flags);
        }
        let mut got = 0;
        while got < len {
            let n = self.recv_once(py, buf.wrapping_add(got), len - got, flags)?;
            if n == 0 {
                break;
            }
            got += n;
        }
        Ok(got)
    }

    /// One recv: the syscall first, then a completion read or a readiness wait.
    fn recv_once(&self, py: Python<'_>, buf: *mut u8, len: usize, flags: c_int) -> PyResult<usize> {
        let deadline = self.start_deadline();
        loop {
            let fd = self.check_open()?;
            if !self.readers_waiting() {
                match sys::recv(fd, buf, len, flags) {
                    Ok(n) => return Ok(n),
                    Err(libc::EINTR) => {
                        py.check_signals()?;
                        continue;
                    }
                    Err(e) if e == libc::EAGAIN || e == libc::EWOULDBLOCK => {}
                    Err(e) => return Err(os_error(e)),
                }
            }
            if self.nonblocking() {
                return Err(would_block());
            }
            let completion = self.kind == Kind::Tcp && flags == 0 && len > 0;
            let outcome = self.wait(py, Dir::Read, completion.then_some((buf, len)), deadline)?;
            match outcome {
                None => return Err(timeout_error()),
                Some(Outcome::Read(n)) => return Ok(n),
                Some(Outcome::Failed(e)) => return Err(os_error(-e)),
                Some(Outcome::Ready) => {}
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
            self.wait_ready(py, Dir::Write, deadline)?;
        }
    }
}

/// Parks `me` on `w` (already queued), bounded by `deadline`; `cancel` unqueues it
/// afterwards whatever woke it. None: the deadline passed.
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
        let out = BytesBuilder::new(py, bufsize as usize)?;
        let n = self.recv_raw(py, out.ptr(), bufsize as usize, flags)?;
        out.finish(py, n)
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
        self.recv_raw(py, buf.ptr(), want, flags)
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

    /// FIONREAD: bytes readable now. Nothing is ever read ahead, so the kernel's count
    /// is the whole truth.
    fn bytes_readable(&self) -> PyResult<c_int> {
        sys::bytes_readable(self.check_open()?).map_err(os_error)
    }

    /// Before the socket closes or detaches its fd: wakes every waiter with EBADF and
    /// drops the handles (closing their dups). The fd itself is the caller's to close.
    fn close(&self) {
        self.drop_handles();
        self.fd.set(-1);
    }
}
