//! uv_poll_t: readiness of raw file descriptors that libuv does not own
//! (pipes, AF_UNIX and foreign sockets, and the hub's signal wake-up pipe).

use super::handle::{check, Handle, UvError};
use super::uv_loop::hub_of;
use crate::tasklet::Tasklet;
use libuv_sys2 as uv;
use pyo3::prelude::*;
use std::cell::{Cell, RefCell};
use std::os::raw::c_int;

pub const READABLE: c_int = uv::uv_poll_event_UV_READABLE as c_int;
pub const WRITABLE: c_int = uv::uv_poll_event_UV_WRITABLE as c_int;

#[derive(Default)]
pub struct PollState {
    /// Events seen by the last callback, or a negative libuv error.
    result: Cell<c_int>,
    waiter: RefCell<Option<Py<Tasklet>>>,
}

/// A one-shot readiness wait for a tasklet: the first event stops the watcher.
pub struct Poll(Handle<uv::uv_poll_t, PollState>);

impl Poll {
    pub fn new(l: *mut uv::uv_loop_t, fd: c_int) -> Result<Self, UvError> {
        // SAFETY: l is a live loop; libuv checks fd itself.
        Handle::new(PollState::default(), |raw| unsafe {
            uv::uv_poll_init(l, raw, fd)
        })
        .map(Poll)
    }

    /// Wakes `waiter` when any of `events` is ready on the fd.
    pub fn start(&self, events: c_int, waiter: Py<Tasklet>) -> Result<(), UvError> {
        let st = self.0.state();
        st.result.set(0);
        *st.waiter.borrow_mut() = Some(waiter);
        // SAFETY: live, initialised poll handle; on_ready matches this state type.
        check(unsafe { uv::uv_poll_start(self.0.raw(), events, Some(on_ready)) }).map(|_| ())
    }

    /// Ready events (READABLE/WRITABLE bits) or the libuv error of the last wake-up.
    pub fn result(&self) -> Result<c_int, UvError> {
        check(self.0.state().result.get())
    }

    pub fn close(self) {
        self.0.state().waiter.borrow_mut().take();
        self.0.close();
    }
}

unsafe extern "C" fn on_ready(raw: *mut uv::uv_poll_t, status: c_int, events: c_int) {
    // SAFETY: raw belongs to a live Poll.
    let st = unsafe { Handle::<uv::uv_poll_t, PollState>::state_of(raw) };
    st.result.set(if status < 0 { status } else { events });
    // SAFETY: live handle; one-shot semantics keep a level-triggered fd from spinning.
    unsafe { uv::uv_poll_stop(raw) };
    if let Some(t) = st.waiter.borrow_mut().take() {
        // SAFETY: the handle was initialised on a hub's loop.
        let hub = unsafe { hub_of((*raw).loop_) };
        Python::attach(|py| hub.wake(py, &t, None));
    }
}

/// The read end of the pipe given to `signal.set_wakeup_fd`: a signal that arrives while
/// the hub sleeps in epoll makes Python's C handler write a byte here, which ends the
/// sleep so the hub can run Python's signal handlers at once. Unref'd: it never keeps
/// the loop alive by itself.
pub struct SignalWakeup {
    poll: Handle<uv::uv_poll_t, ()>,
    read_fd: c_int,
    write_fd: c_int,
}

impl SignalWakeup {
    pub fn new(l: *mut uv::uv_loop_t) -> Result<Self, UvError> {
        let mut fds: [uv::uv_file; 2] = [-1, -1];
        let nonblock = uv::uv_stdio_flags_UV_NONBLOCK_PIPE as c_int;
        // SAFETY: fds has room for the two descriptors uv_pipe writes.
        check(unsafe { uv::uv_pipe(fds.as_mut_ptr(), nonblock, nonblock) })?;
        let (read_fd, write_fd) = (fds[0], fds[1]);
        // SAFETY: l is a live loop and read_fd a fresh pipe end.
        let poll = Handle::new((), |raw| unsafe { uv::uv_poll_init(l, raw, read_fd) });
        let poll = match poll {
            Ok(p) => p,
            Err(e) => {
                close_fds(&[read_fd, write_fd]);
                return Err(e);
            }
        };
        let readable = READABLE;
        // SAFETY: live, initialised poll handle.
        if let Err(e) = check(unsafe { uv::uv_poll_start(poll.raw(), readable, Some(on_signal)) }) {
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

    pub fn close(self) {
        self.poll.close();
        close_fds(&[self.read_fd, self.write_fd]);
    }
}

fn close_fds(fds: &[c_int]) {
    for &fd in fds {
        // SAFETY: fd is a pipe end this module created and nothing else closes.
        unsafe { libc::close(fd) };
    }
}

unsafe extern "C" fn on_signal(raw: *mut uv::uv_poll_t, _status: c_int, _events: c_int) {
    // Only drain: the hub calls PyErr_CheckSignals after every blocking pass.
    let mut buf = [0u8; 64];
    // SAFETY: raw is a live poll handle; uv_fileno reports the fd it watches.
    let mut fd: uv::uv_os_fd_t = -1;
    unsafe { uv::uv_fileno(raw as *const uv::uv_handle_t, &mut fd) };
    loop {
        // SAFETY: buf is a valid writable buffer of buf.len() bytes; fd is non-blocking.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
    }
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
        // SAFETY: reading into a valid buffer from our own non-blocking pipe.
        let n = unsafe { libc::read(w.read_fd, buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(n, -1, "the callback read everything");
        w.close();
        l.close_at_thread_exit();
    }
}
