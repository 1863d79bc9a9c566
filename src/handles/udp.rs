//! uv_udp_t adopting a datagram socket's fd (uv_udp_open). Waiting readers offer an
//! empty buffer, so libuv reports readability (UV_ENOBUFS) without consuming a
//! datagram; the socket layer then calls recvfrom/recvmsg itself, which keeps
//! CPython's address handling, flags and truncation rules exactly.
//!
//! As with TCP, the handle watches the socket's own fd but never owns it.

use super::handle::{check, Handle, UvError};
use super::waiters::{Outcome, WaitQueue, Waiter};
use libuv_sys2 as uv;
use std::os::raw::{c_int, c_uint};
use std::rc::Rc;

#[derive(Default)]
pub struct UdpState {
    readers: WaitQueue,
}

pub struct UdpSocket(Handle<uv::uv_udp_t, UdpState>);

impl UdpSocket {
    /// Watches `fd` (which stays the caller's to close, after `release`).
    pub fn open(l: *mut uv::uv_loop_t, fd: c_int) -> Result<Self, UvError> {
        // SAFETY: l is a live loop; the handle memory is allocated by Handle::new.
        let h = Handle::new(UdpState::default(), |raw| unsafe {
            uv::uv_udp_init(l, raw)
        })?;
        // SAFETY: live, initialised udp handle; fd is a datagram socket the caller hands over.
        if let Err(e) = check(unsafe { uv::uv_udp_open(h.raw(), fd as uv::uv_os_sock_t) }) {
            h.close();
            return Err(e);
        }
        Ok(UdpSocket(h))
    }

    pub fn wait(&self, w: Rc<Waiter>) -> Result<(), UvError> {
        if self.0.state().readers.push(w.clone()) {
            // SAFETY: live udp handle; the callbacks match this state type.
            let rc = unsafe { uv::uv_udp_recv_start(self.0.raw(), Some(on_alloc), Some(on_recv)) };
            if rc != uv::uv_errno_t_UV_EALREADY {
                check(rc).inspect_err(|_| {
                    self.0.state().readers.remove(&w);
                })?;
            }
        }
        Ok(())
    }

    pub fn cancel(&self, w: &Rc<Waiter>) {
        if self.0.state().readers.remove(w) {
            // SAFETY: live udp handle.
            unsafe { uv::uv_udp_recv_stop(self.0.raw()) };
        }
    }

    pub fn fail_all(&self, err: c_int) {
        self.0
            .state()
            .readers
            .complete_all(self.0.uv_loop(), Outcome::Failed(err));
        // SAFETY: live udp handle.
        unsafe { uv::uv_udp_recv_stop(self.0.raw()) };
    }

    /// Stops watching, hands the fd back and closes the handle; the fd stays open.
    pub fn release(self) {
        // SAFETY: live handle on its own loop; see fd_release for the field access.
        unsafe {
            uv::uv_udp_recv_stop(self.0.raw());
            super::fd_release(self.0.uv_loop(), &raw mut (*self.0.raw()).io_watcher);
        }
        self.0.close();
    }
}

unsafe extern "C" fn on_alloc(_h: *mut uv::uv_handle_t, _suggested: usize, buf: *mut uv::uv_buf_t) {
    // Always empty: readiness only (see the module comment).
    // SAFETY: libuv passes a valid out-pointer.
    unsafe {
        *buf = uv::uv_buf_t {
            base: std::ptr::null_mut(),
            len: 0,
        }
    };
}

unsafe extern "C" fn on_recv(
    h: *mut uv::uv_udp_t,
    nread: isize,
    _buf: *const uv::uv_buf_t,
    _addr: *const uv::sockaddr,
    _flags: c_uint,
) {
    // SAFETY: h is the handle of a live UdpSocket.
    let st = unsafe { Handle::<uv::uv_udp_t, UdpState>::state_of(h) };
    // SAFETY: h is a live handle.
    let l = unsafe { (*h).loop_ };
    if nread == 0 {
        return;
    }
    // ENOBUFS means readable; an error is also left for the syscall to report.
    st.readers.complete_first(l, Outcome::Ready);
    if st.readers.is_empty() {
        // SAFETY: live handle; stopping from the callback is allowed.
        unsafe { uv::uv_udp_recv_stop(h) };
    }
}
