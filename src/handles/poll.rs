//! uv_poll_t: readiness of raw file descriptors that libuv does not own
//! (pipes, AF_UNIX and foreign sockets, a dup used for write readiness, and the
//! hub's signal wake-up pipe).

use super::handle::{check, Handle, UvError};
use super::waiters::{Outcome, WaitQueue, Waiter};
use libuv_sys2 as uv;
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
        // SAFETY: l is a live loop; libuv checks fd itself. uv_poll never closes the fd.
        Handle::new(WatchState::default(), |raw| unsafe {
            uv::uv_poll_init(l, raw, fd)
        })
        .map(FdWatcher)
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
        // SAFETY: live, initialised poll handle.
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

unsafe extern "C" fn on_signal(raw: *mut uv::uv_poll_t, _status: c_int, _events: c_int) {
    // Only drain: the hub calls PyErr_CheckSignals after every blocking pass.
    let mut buf = [0u8; 64];
    let mut fd: uv::uv_os_fd_t = -1;
    // SAFETY: raw is a live poll handle; uv_fileno reports the fd it watches.
    unsafe { uv::uv_fileno(raw as *const uv::uv_handle_t, &mut fd) };
    while crate::sys::recv_pipe(fd, &mut buf) > 0 {}
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
