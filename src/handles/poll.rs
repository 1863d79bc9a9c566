//! uv_poll_t: readiness of raw file descriptors that libuv does not own
//! (pipes, AF_UNIX and foreign sockets, a dup used for write readiness, and the
//! hub's signal wake-up pipe).

use super::handle::{check, Handle, UvError};
use super::waiters::{Outcome, WaitQueue, Waiter};
use libuv_sys2 as uv;
use std::cell::{Cell, RefCell};
use std::os::raw::c_int;
use std::rc::Rc;

pub const READABLE: c_int = uv::uv_poll_event_UV_READABLE as c_int;
pub const WRITABLE: c_int = uv::uv_poll_event_UV_WRITABLE as c_int;
const DISCONNECT: c_int = uv::uv_poll_event_UV_DISCONNECT as c_int;

#[derive(Default)]
pub struct WatchState {
    readers: WaitQueue,
    writers: WaitQueue,
}

/// Readiness of one fd, with FIFO queues of waiting readers and writers. The watcher
/// only asks libuv for the directions somebody waits on.
pub struct FdWatcher(Handle<uv::uv_poll_t, WatchState>);

impl FdWatcher {
    pub fn new(l: *mut uv::uv_loop_t, fd: c_int) -> Result<Self, UvError> {
        // uv_poll_init sets O_NONBLOCK, which lives in the open file description: shared
        // with every dup and every forked child (a pipe a worker process reads, a tty).
        // A poll handle only waits for readiness, so put the program's flag back.
        let was_nonblocking = crate::sys::is_nonblocking(fd);
        // SAFETY: l is a live loop; libuv checks fd itself. uv_poll never closes the fd.
        let watcher = Handle::new(WatchState::default(), |raw| unsafe {
            uv::uv_poll_init(l, raw, fd)
        })
        .map(FdWatcher);
        if !was_nonblocking {
            let _ = crate::sys::set_nonblocking(fd, false);
        }
        watcher
    }

    fn queue(&self, events: c_int) -> &WaitQueue {
        let st = self.0.state();
        if events == READABLE {
            &st.readers
        } else {
            &st.writers
        }
    }

    /// Queues `w` until the fd is `events` (READABLE or WRITABLE).
    pub fn wait(&self, events: c_int, w: Rc<Waiter>) -> Result<(), UvError> {
        self.queue(events).push(w);
        self.update()
    }

    /// Queues `r` for readability if `read` and `w` for writability if `write`.
    pub fn wait_each(
        &self,
        read: bool,
        write: bool,
        r: &Rc<Waiter>,
        w: &Rc<Waiter>,
    ) -> Result<(), UvError> {
        if read {
            self.wait(READABLE, r.clone())?;
        }
        if write {
            self.wait(WRITABLE, w.clone())?;
        }
        Ok(())
    }

    /// Takes both waiters of `wait_each` off their queues.
    pub fn cancel_each(&self, r: &Rc<Waiter>, w: &Rc<Waiter>) {
        self.cancel(READABLE, r);
        self.cancel(WRITABLE, w);
    }

    /// Takes `w` off the queue (it was woken some other way).
    pub fn cancel(&self, events: c_int, w: &Rc<Waiter>) {
        self.queue(events).remove(w);
        let _ = self.update();
    }

    pub fn has_waiters(&self) -> bool {
        let st = self.0.state();
        !(st.readers.is_empty() && st.writers.is_empty())
    }

    /// Every waiter fails with `err` (the socket is being closed).
    pub fn fail_all(&self, err: c_int) {
        let st = self.0.state();
        st.readers
            .complete_all(self.0.uv_loop(), Outcome::Failed(err));
        st.writers
            .complete_all(self.0.uv_loop(), Outcome::Failed(err));
        let _ = self.update();
    }

    fn update(&self) -> Result<(), UvError> {
        let st = self.0.state();
        let events = if st.readers.is_empty() { 0 } else { READABLE }
            | if st.writers.is_empty() { 0 } else { WRITABLE };
        // SAFETY: live, initialised poll handle; on_ready matches this state type.
        check(unsafe {
            if events == 0 {
                uv::uv_poll_stop(self.0.raw())
            } else {
                uv::uv_poll_start(self.0.raw(), events, Some(on_ready))
            }
        })
        .map(|_| ())
    }

    pub fn close(self) {
        self.0.close();
    }
}

unsafe extern "C" fn on_ready(raw: *mut uv::uv_poll_t, status: c_int, events: c_int) {
    // SAFETY: raw belongs to a live FdWatcher.
    let st = unsafe { Handle::<uv::uv_poll_t, WatchState>::state_of(raw) };
    // SAFETY: raw is a live handle.
    let l = unsafe { (*raw).loop_ };
    if status < 0 {
        // libuv reports POLLERR as UV_EBADF (and stops the watcher): let every waiter
        // retry its syscall, which reports the socket's real error.
        st.readers.complete_all(l, Outcome::Ready);
        st.writers.complete_all(l, Outcome::Ready);
    } else {
        // One waiter per event: the fd is level-triggered, so the next is served next time.
        if events & (READABLE | DISCONNECT) != 0 {
            st.readers.complete_first(l, Outcome::Ready);
        }
        if events & WRITABLE != 0 {
            st.writers.complete_first(l, Outcome::Ready);
        }
    }
    let events = if st.readers.is_empty() { 0 } else { READABLE }
        | if st.writers.is_empty() { 0 } else { WRITABLE };
    // SAFETY: live handle; narrowing or stopping the watch from its own callback is allowed.
    unsafe {
        if events == 0 {
            uv::uv_poll_stop(raw);
        } else {
            uv::uv_poll_start(raw, events, Some(on_ready));
        }
    }
}

/// The read end of the pipe given to `signal.set_wakeup_fd`: a signal that arrives while
/// the hub sleeps in epoll makes Python's C handler write a byte here, which ends the
/// sleep so the hub can run Python's signal handlers at once. Unref'd unless a tasklet
/// waits in `signal.pause()`: it never keeps the loop alive by itself.
pub struct SignalWakeup {
    poll: Handle<uv::uv_poll_t, SignalState>,
    read_fd: c_int,
    write_fd: c_int,
}

pub struct SignalState {
    /// Tasklets in `signal.pause()`, woken by the next signal byte.
    pausers: RefCell<Vec<Rc<Waiter>>>,
    /// The hub has nothing else to wait for, but a Python signal handler may wake a
    /// tasklet: the pipe keeps the loop alive until a signal comes.
    hold_loop: Cell<bool>,
    /// The program's own wake-up fd (-1: none): every byte we read is copied there, as
    /// CPython's handler would have written it.
    forward_fd: Cell<c_int>,
    warn_on_full_buffer: Cell<bool>,
}

impl SignalWakeup {
    pub fn new(l: *mut uv::uv_loop_t) -> Result<Self, UvError> {
        let mut fds: [uv::uv_file; 2] = [-1, -1];
        let nonblock = uv::uv_stdio_flags_UV_NONBLOCK_PIPE as c_int;
        // SAFETY: fds has room for the two descriptors uv_pipe writes.
        check(unsafe { uv::uv_pipe(fds.as_mut_ptr(), nonblock, nonblock) })?;
        let (read_fd, write_fd) = (fds[0], fds[1]);
        let state = SignalState {
            pausers: RefCell::new(Vec::new()),
            hold_loop: Cell::new(false),
            forward_fd: Cell::new(-1),
            warn_on_full_buffer: Cell::new(true),
        };
        // SAFETY: l is a live loop and read_fd a fresh pipe end.
        let poll = Handle::new(state, |raw| unsafe { uv::uv_poll_init(l, raw, read_fd) });
        let poll = match poll {
            Ok(p) => p,
            Err(e) => {
                close_fds(&[read_fd, write_fd]);
                return Err(e);
            }
        };
        // SAFETY: live, initialised poll handle; on_signal matches its state type.
        if let Err(e) = check(unsafe { uv::uv_poll_start(poll.raw(), READABLE, Some(on_signal)) }) {
            poll.close();
            close_fds(&[read_fd, write_fd]);
            return Err(e);
        }
        poll.set_ref(false);
        Ok(SignalWakeup {
            poll,
            read_fd,
            write_fd,
        })
    }

    pub fn write_fd(&self) -> c_int {
        self.write_fd
    }

    /// Sets the program's wake-up fd (-1: none); returns the previous one.
    pub fn set_forward(&self, fd: c_int, warn_on_full_buffer: bool) -> c_int {
        let st = self.poll.state();
        st.warn_on_full_buffer.set(warn_on_full_buffer);
        st.forward_fd.replace(fd)
    }

    /// Reads (and forwards) what is in the pipe now, waking nobody: bytes of signals whose
    /// handlers already ran must not end a `pause()` that starts after them.
    pub fn drain(&self) {
        drain(self.poll.state(), self.read_fd);
    }

    /// Queues `w` until the next signal byte; while anyone waits, the loop stays alive.
    pub fn wait(&self, w: Rc<Waiter>) {
        self.poll.state().pausers.borrow_mut().push(w);
        self.update_ref();
    }

    /// Takes `w` off the queue (woken some other way).
    pub fn cancel(&self, w: &Rc<Waiter>) {
        self.poll
            .state()
            .pausers
            .borrow_mut()
            .retain(|x| !Rc::ptr_eq(x, w));
        self.update_ref();
    }

    /// While `hold`, the pipe keeps the loop alive (see `SignalState::hold_loop`).
    pub fn hold_loop(&self, hold: bool) {
        self.poll.state().hold_loop.set(hold);
        self.update_ref();
    }

    fn update_ref(&self) {
        let st = self.poll.state();
        self.poll
            .set_ref(st.hold_loop.get() || !st.pausers.borrow().is_empty());
    }

    /// After fork: a fresh pipe takes the old one's program fd and waiting tasklets.
    pub fn take_over(&self, old: &SignalWakeup) {
        let (new, old) = (self.poll.state(), old.poll.state());
        self.set_forward(old.forward_fd.get(), old.warn_on_full_buffer.get());
        let moved: Vec<_> = old.pausers.borrow_mut().drain(..).collect();
        new.pausers.borrow_mut().extend(moved);
        self.update_ref();
    }

    pub fn close(self) {
        self.poll.close();
        close_fds(&[self.read_fd, self.write_fd]);
    }
}

fn close_fds(fds: &[c_int]) {
    for &fd in fds {
        crate::sys::close(fd);
    }
}

/// Empties the pipe, copying each byte to the program's fd; returns how many were read.
fn drain(st: &SignalState, fd: c_int) -> usize {
    let mut buf = [0u8; 64];
    let mut total = 0;
    loop {
        let n = crate::sys::recv_pipe(fd, &mut buf);
        if n <= 0 {
            return total;
        }
        total += n as usize;
        forward(st, &buf[..n as usize]);
    }
}

/// Writes the signal bytes to the program's wake-up fd without blocking. A failure is
/// reported as CPython's handler does: later, by the interpreter, outside this callback
/// (a full buffer only if warn_on_full_buffer).
fn forward(st: &SignalState, mut bytes: &[u8]) {
    let fd = st.forward_fd.get();
    if fd < 0 {
        return;
    }
    while !bytes.is_empty() {
        // SAFETY: bytes is a valid slice; a bad fd only makes write(2) fail.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n > 0 {
            bytes = &bytes[n as usize..];
            continue;
        }
        let err = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        if err == libc::EINTR {
            continue;
        }
        let full = err == libc::EAGAIN || err == libc::EWOULDBLOCK;
        if st.warn_on_full_buffer.get() || !full {
            // SAFETY: Py_AddPendingCall may be called without the GIL (it is meant for
            // signal handlers); the errno travels in the pointer-sized argument.
            unsafe {
                pyo3::ffi::Py_AddPendingCall(Some(report_write_error), err as isize as *mut _)
            };
        }
        return;
    }
}

unsafe extern "C" {
    /// CPython's unraisable report with a custom message (exported, not in pyo3-ffi).
    fn _PyErr_WriteUnraisableMsg(msg: *const std::os::raw::c_char, obj: *mut pyo3::ffi::PyObject);
}

/// Runs as a pending call in the main thread, with the GIL: the same report as CPython's.
extern "C" fn report_write_error(arg: *mut std::os::raw::c_void) -> c_int {
    use pyo3::ffi;
    let mut exc = std::ptr::null_mut();
    let mut val = std::ptr::null_mut();
    let mut tb = std::ptr::null_mut();
    // SAFETY: pending calls run with the GIL held; any exception being handled is saved and
    // restored around the report, and errno is set only for PyErr_SetFromErrno.
    unsafe {
        ffi::PyErr_Fetch(&mut exc, &mut val, &mut tb);
        *libc::__errno_location() = arg as isize as c_int;
        ffi::PyErr_SetFromErrno(ffi::PyExc_OSError);
        _PyErr_WriteUnraisableMsg(
            c"when trying to write to the signal wakeup fd".as_ptr(),
            std::ptr::null_mut(),
        );
        ffi::PyErr_Restore(exc, val, tb);
    }
    0
}

unsafe extern "C" fn on_signal(raw: *mut uv::uv_poll_t, _status: c_int, _events: c_int) {
    // Only drain, forward and wake pause(): the hub runs Python's handlers after this pass.
    // SAFETY: raw belongs to a live SignalWakeup.
    let st = unsafe { Handle::<uv::uv_poll_t, SignalState>::state_of(raw) };
    let mut fd: uv::uv_os_fd_t = -1;
    // SAFETY: raw is a live poll handle; uv_fileno reports the fd it watches.
    unsafe { uv::uv_fileno(raw as *const uv::uv_handle_t, &mut fd) };
    if drain(st, fd) == 0 {
        return;
    }
    let woken: Vec<_> = st.pausers.borrow_mut().drain(..).collect();
    if woken.is_empty() {
        return;
    }
    if !st.hold_loop.get() {
        // SAFETY: live handle; nobody waits any more.
        unsafe { uv::uv_unref(raw as *mut uv::uv_handle_t) };
    }
    // SAFETY: raw is a live handle.
    let l = unsafe { (*raw).loop_ };
    let q = WaitQueue::default();
    for w in woken {
        q.push(w);
    }
    q.complete_all(l, Outcome::Ready);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handles::uv_loop::Loop;

    #[test]
    fn signal_wakeup_drains_its_pipe() {
        let l = Loop::new().unwrap();
        let w = SignalWakeup::new(l.raw()).unwrap();
        assert!(!l.alive(), "the wake-up pipe never keeps the loop alive");
        // uv_run does nothing on a loop that is not alive; the hub only polls live loops.
        w.poll.set_ref(true);
        // SAFETY: writing three bytes from a valid buffer to our own pipe.
        assert_eq!(
            unsafe { libc::write(w.write_fd(), b"abc".as_ptr().cast(), 3) },
            3
        );
        l.run_nowait();
        let mut buf = [0u8; 8];
        assert_eq!(
            crate::sys::recv_pipe(w.read_fd, &mut buf),
            -1,
            "the callback read everything"
        );
        w.close();
        l.close_at_thread_exit();
    }
}
