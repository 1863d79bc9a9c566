//! uv_getaddrinfo_t: the system's getaddrinfo on libuv's thread pool, so answers are
//! exactly the system resolver's (/etc/hosts, nsswitch, service names, AI_* flags).
//! The result list is copied out and freed inside the callback; no Python runs there.

use super::handle::{check, UvError};
use super::uv_loop::hub_of;
use crate::tasklet::Tasklet;
use libuv_sys2 as uv;
use pyo3::prelude::*;
use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::os::raw::{c_char, c_int};
use std::rc::Rc;

/// One entry of a getaddrinfo answer.
pub struct AddrInfo {
    pub family: c_int,
    pub socktype: c_int,
    pub protocol: c_int,
    pub canonname: String,
    pub addr: SockAddr,
}

pub enum SockAddr {
    V4(String, u16),
    V6(String, u16, u32, u32),
    /// A family CPython would show as (family, raw bytes).
    Other(c_int, Vec<u8>),
}

/// A lookup in flight; the waiting tasklet reads `outcome` once woken.
#[derive(Default)]
pub struct Lookup {
    outcome: RefCell<Option<Result<Vec<AddrInfo>, c_int>>>,
    waiter: RefCell<Option<Py<Tasklet>>>,
}

impl Lookup {
    pub fn take_outcome(&self) -> Option<Result<Vec<AddrInfo>, c_int>> {
        self.outcome.borrow_mut().take()
    }

    /// The waiter left (killed): the callback will only free memory.
    pub fn abandon(&self) {
        self.waiter.borrow_mut().take();
    }
}

#[repr(C)]
struct Req {
    raw: uv::uv_getaddrinfo_t,
    lookup: Rc<Lookup>,
}

/// Starts a lookup; `waiter` is woken when it completes.
#[allow(clippy::too_many_arguments)]
pub fn getaddrinfo(
    l: *mut uv::uv_loop_t,
    host: Option<&CStr>,
    port: Option<&CStr>,
    family: c_int,
    socktype: c_int,
    protocol: c_int,
    flags: c_int,
    waiter: Py<Tasklet>,
) -> Result<Rc<Lookup>, UvError> {
    let lookup = Rc::new(Lookup::default());
    *lookup.waiter.borrow_mut() = Some(waiter);
    // SAFETY: zeroed is a valid state for these plain C structs before the call fills them.
    let mut hints: uv::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = family;
    hints.ai_socktype = socktype;
    hints.ai_protocol = protocol;
    hints.ai_flags = flags;
    let req = Box::into_raw(Box::new(Req {
        // SAFETY: as above.
        raw: unsafe { std::mem::zeroed() },
        lookup: lookup.clone(),
    }));
    let c = |s: Option<&CStr>| s.map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: req is ours until the callback; libuv copies host, port and hints.
    let rc = unsafe {
        uv::uv_getaddrinfo(
            l,
            &raw mut (*req).raw,
            Some(on_done),
            c(host),
            c(port),
            &hints,
        )
    };
    if let Err(e) = check(rc) {
        // SAFETY: the request was not started, so libuv holds no reference to it.
        drop(unsafe { Box::from_raw(req) });
        return Err(e);
    }
    Ok(lookup)
}

unsafe extern "C" fn on_done(
    raw: *mut uv::uv_getaddrinfo_t,
    status: c_int,
    res: *mut uv::addrinfo,
) {
    // SAFETY: raw is the first field of the Req leaked in getaddrinfo; libuv is done with it.
    let req = unsafe { Box::from_raw(raw as *mut Req) };
    let outcome = if status < 0 {
        Err(status)
    } else {
        // SAFETY: res is the list libuv got from getaddrinfo; freed right after copying.
        let list = unsafe { copy_list(res) };
        // SAFETY: res came from uv_getaddrinfo and is freed once.
        unsafe { uv::uv_freeaddrinfo(res) };
        Ok(list)
    };
    *req.lookup.outcome.borrow_mut() = Some(outcome);
    // SAFETY: the request ran on a hub's loop.
    let hub = unsafe { hub_of((*raw).loop_) };
    super::attach_or_leak(req, |py, req| {
        if let Some(t) = req.lookup.waiter.borrow_mut().take() {
            hub.wake(py, &t, None);
        }
        drop(req);
    });
}

/// Copies a getaddrinfo result list into Rust values.
///
/// # Safety
/// `ai` must be NULL or a valid list from getaddrinfo.
unsafe fn copy_list(mut ai: *mut uv::addrinfo) -> Vec<AddrInfo> {
    let mut out = Vec::new();
    while !ai.is_null() {
        // SAFETY: ai is a valid list node per the contract.
        let a = unsafe { &*ai };
        let canonname = if a.ai_canonname.is_null() {
            String::new()
        } else {
            // SAFETY: getaddrinfo's canonname is a NUL-terminated string.
            unsafe { CStr::from_ptr(a.ai_canonname) }
                .to_string_lossy()
                .into_owned()
        };
        // SAFETY: ai_addr points at ai_addrlen bytes of a sockaddr of family ai_family.
        let addr = unsafe { copy_sockaddr(a.ai_addr, a.ai_addrlen as usize) };
        out.push(AddrInfo {
            family: a.ai_family,
            socktype: a.ai_socktype,
            protocol: a.ai_protocol,
            canonname,
            addr,
        });
        ai = a.ai_next;
    }
    out
}

/// # Safety
/// `sa` must point at `len` readable bytes holding a sockaddr.
unsafe fn copy_sockaddr(sa: *const uv::sockaddr, len: usize) -> SockAddr {
    let mut buf = [0 as c_char; 64];
    // SAFETY: per the contract; the family decides the concrete struct.
    unsafe {
        match (*sa).sa_family as c_int {
            f if f == libc::AF_INET => {
                let sin = &*(sa as *const uv::sockaddr_in);
                uv::uv_ip4_name(sin, buf.as_mut_ptr(), buf.len());
                let host = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
                SockAddr::V4(host, u16::from_be(sin.sin_port))
            }
            f if f == libc::AF_INET6 => {
                let sin6 = &*(sa as *const uv::sockaddr_in6);
                // uv_ip6_name appends %scope; CPython reports the scope separately.
                let mut plain = *sin6;
                plain.sin6_scope_id = 0;
                uv::uv_ip6_name(&plain, buf.as_mut_ptr(), buf.len());
                let host = CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned();
                SockAddr::V6(
                    host,
                    u16::from_be(sin6.sin6_port),
                    u32::from_be(sin6.sin6_flowinfo),
                    sin6.sin6_scope_id,
                )
            }
            f => {
                let bytes = std::slice::from_raw_parts(sa as *const u8, len).to_vec();
                SockAddr::Other(f, bytes)
            }
        }
    }
}

/// A NUL-terminated copy for the C call (a NUL inside is CPython's ValueError).
pub fn c_string(b: &[u8]) -> Result<CString, std::ffi::NulError> {
    CString::new(b)
}
