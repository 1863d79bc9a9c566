//! uv_tcp_t adopting a stream socket's fd (uv_tcp_open). Reads are completion-style:
//! libuv reads straight into the waiting caller's buffer, one waiter at a time in FIFO
//! order, and stops as soon as nobody waits, so nothing is ever read ahead (select and
//! FIONREAD stay truthful, and an unread flood stays in the kernel's buffers). A
//! readiness waiter (MSG_PEEK, accept, recvmsg, ...) offers an empty buffer, which
//! libuv answers with UV_ENOBUFS on readability without reading.
//!
//! The handle watches the socket's own fd but never owns it: `release` takes the fd
//! back from libuv before the handle closes, so only the socket object closes it.

use super::handle::{check, Handle, UvError};
use super::waiters::{Outcome, WaitQueue, Waiter};
use libuv_sys2 as uv;
use std::os::raw::c_int;
use std::rc::Rc;

#[derive(Default)]
pub struct TcpState {
    readers: WaitQueue,
}

pub struct TcpStream(Handle<uv::uv_tcp_t, TcpState>);

impl TcpStream {
    /// Watches `fd` (which stays the caller's to close, after `release`).
    pub fn open(l: *mut uv::uv_loop_t, fd: c_int) -> Result<Self, UvError> {
        // SAFETY: l is a live loop; the handle memory is allocated by Handle::new.
        let h = Handle::new(TcpState::default(), |raw| unsafe {
            uv::uv_tcp_init(l, raw)
        })?;
        // SAFETY: live, initialised tcp handle; fd is a stream socket the caller hands over.
        if let Err(e) = check(unsafe { uv::uv_tcp_open(h.raw(), fd as uv::uv_os_sock_t) }) {
            h.close(); // the fd was not taken, so this does not close it
            return Err(e);
        }
        Ok(TcpStream(h))
    }

    /// Queues a reader; the first one starts libuv reading.
    pub fn wait(&self, w: Rc<Waiter>) -> Result<(), UvError> {
        if self.0.state().readers.push(w.clone()) {
            self.start_reading().inspect_err(|_| {
                self.0.state().readers.remove(&w);
            })?;
        }
        Ok(())
    }

    fn start_reading(&self) -> Result<(), UvError> {
        // SAFETY: live stream; the callbacks match this state type.
        let rc = unsafe { uv::uv_read_start(self.0.raw().cast(), Some(on_alloc), Some(on_read)) };
        if rc == uv::uv_errno_t_UV_EALREADY {
            Ok(())
        } else {
            check(rc).map(|_| ())
        }
    }

    pub fn cancel(&self, w: &Rc<Waiter>) {
        if self.0.state().readers.remove(w) {
            // SAFETY: live stream.
            unsafe { uv::uv_read_stop(self.0.raw().cast()) };
        }
    }

    pub fn has_readers(&self) -> bool {
        !self.0.state().readers.is_empty()
    }

    pub fn fail_all(&self, err: c_int) {
        self.0
            .state()
            .readers
            .complete_all(self.0.uv_loop(), Outcome::Failed(err));
        // SAFETY: live stream.
        unsafe { uv::uv_read_stop(self.0.raw().cast()) };
    }

    /// Wakes nobody, stops watching, hands the fd back, and closes the handle; the fd
    /// stays open. Must run before the fd itself is closed.
    pub fn release(self) {
        // SAFETY: live stream on its own loop; see fd_release for the field access.
        unsafe {
            uv::uv_read_stop(self.0.raw().cast());
            super::fd_release(self.0.uv_loop(), &raw mut (*self.0.raw()).io_watcher);
        }
        self.0.close();
    }
}

unsafe extern "C" fn on_alloc(h: *mut uv::uv_handle_t, _suggested: usize, buf: *mut uv::uv_buf_t) {
    // SAFETY: h is the handle of a live TcpStream.
    let st = unsafe { Handle::<uv::uv_tcp_t, TcpState>::state_of(h.cast()) };
    let b = st.readers.front().map_or(
        uv::uv_buf_t {
            base: std::ptr::null_mut(),
            len: 0,
        },
        |w| w.alloc(),
    );
    // SAFETY: libuv passes a valid out-pointer.
    unsafe { *buf = b };
}

unsafe extern "C" fn on_read(s: *mut uv::uv_stream_t, nread: isize, _buf: *const uv::uv_buf_t) {
    // SAFETY: s is the stream of a live TcpStream.
    let st = unsafe { Handle::<uv::uv_tcp_t, TcpState>::state_of(s.cast()) };
    // SAFETY: s is a live handle.
    let l = unsafe { (*s).loop_ };
    let eof = uv::uv_errno_t_UV_EOF as isize;
    let enobufs = uv::uv_errno_t_UV_ENOBUFS as isize;
    match nread {
        0 => return, // EAGAIN: nothing was read, the buffer is still the first waiter's
        n if n > 0 => {
            st.readers.complete_first(l, Outcome::Read(n as usize));
            // libuv would read again at once for the next waiter, which on an fd that
            // CPython's mode keeps blocking could block the thread: the others retry
            // their own non-blocking syscall instead.
            st.readers.complete_all(l, Outcome::Ready);
        }
        n if n == eof => st.readers.complete_first(l, Outcome::Read(0)),
        n if n == enobufs => st.readers.complete_first(l, Outcome::Ready),
        n => {
            // libuv stops reading after an error; let everyone ask the kernel again.
            st.readers.complete_first(l, Outcome::Failed(n as c_int));
            st.readers.complete_all(l, Outcome::Ready);
        }
    }
    // SAFETY: live stream; stopping or (re)starting from the read callback is allowed.
    unsafe {
        if st.readers.is_empty() {
            uv::uv_read_stop(s);
        } else if nread == eof {
            // libuv stops reading at EOF; the next reader sees EOF from the kernel too.
            st.readers.complete_all(l, Outcome::Ready);
        }
    }
}
