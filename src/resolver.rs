//! Python entry points for name resolution and thread-pool work.

use crate::handles::dns::{self, SockAddr};
use crate::handles::work;
use crate::hub::Hub;
use crate::sys::os_error;
use crate::thread_result::ThreadResult;
use libuv_sys2 as uv;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use std::ffi::CStr;
use std::os::raw::c_int;

type Entry = (c_int, c_int, c_int, String, Py<PyAny>);

/// glibc's EAI_* value for libuv's UV_EAI_* code.
fn system_eai(code: c_int) -> Option<c_int> {
    let table: &[(i32, c_int)] = &[
        (uv::uv_errno_t_UV_EAI_BADFLAGS, -1),
        (uv::uv_errno_t_UV_EAI_NONAME, -2),
        (uv::uv_errno_t_UV_EAI_AGAIN, -3),
        (uv::uv_errno_t_UV_EAI_FAIL, -4),
        (uv::uv_errno_t_UV_EAI_NODATA, -5),
        (uv::uv_errno_t_UV_EAI_FAMILY, -6),
        (uv::uv_errno_t_UV_EAI_SOCKTYPE, -7),
        (uv::uv_errno_t_UV_EAI_SERVICE, -8),
        (uv::uv_errno_t_UV_EAI_ADDRFAMILY, -9),
        (uv::uv_errno_t_UV_EAI_MEMORY, -10),
        (uv::uv_errno_t_UV_EAI_OVERFLOW, -12),
        (uv::uv_errno_t_UV_EAI_CANCELED, -101),
    ];
    table
        .iter()
        .find(|(uv_code, _)| *uv_code == code)
        .map(|&(_, sys)| sys)
}

/// socket.gaierror(code, gai_strerror(code)), or OSError for EAI_SYSTEM's errno.
fn lookup_error(py: Python<'_>, code: c_int) -> PyErr {
    let Some(eai) = system_eai(code) else {
        return os_error(-code);
    };
    // SAFETY: gai_strerror returns a static string for any code.
    let msg = unsafe { CStr::from_ptr(libc::gai_strerror(eai)) }
        .to_string_lossy()
        .into_owned();
    match py.import("_socket").and_then(|m| m.getattr("gaierror")) {
        Ok(cls) => match cls.call1((eai, msg)) {
            Ok(inst) => PyErr::from_value(inst),
            Err(e) => e,
        },
        Err(e) => e,
    }
}

fn to_c(b: Option<&[u8]>) -> PyResult<Option<std::ffi::CString>> {
    b.map(dns::c_string)
        .transpose()
        .map_err(|_| PyValueError::new_err("embedded null character"))
}

/// getaddrinfo(host, port, family, type, proto, flags) with host and port already
/// bytes (or None); entries are (family, type, proto, canonname, sockaddr).
#[pyfunction]
#[pyo3(signature = (host, port, family=0, socktype=0, proto=0, flags=0))]
pub fn getaddrinfo(
    py: Python<'_>,
    host: Option<&[u8]>,
    port: Option<&[u8]>,
    family: c_int,
    socktype: c_int,
    proto: c_int,
    flags: c_int,
) -> PyResult<Vec<Entry>> {
    if host.is_none() && port.is_none() {
        // What the system's getaddrinfo answers (libuv refuses the call with EINVAL).
        return Err(lookup_error(py, uv::uv_errno_t_UV_EAI_NONAME));
    }
    let host = to_c(host)?;
    let port = to_c(port)?;
    let hub = Hub::get(py)?;
    let me = hub.current_tasklet(py)?;
    let lookup = dns::getaddrinfo(
        hub.uv_loop().raw(),
        host.as_deref(),
        port.as_deref(),
        family,
        socktype,
        proto,
        flags,
        me.clone_ref(py),
    )?;
    hub.park_until(py, &me, None, || lookup.abandon())?;
    let list = match lookup.take_outcome() {
        Some(Ok(list)) => list,
        Some(Err(code)) => return Err(lookup_error(py, code)),
        None => return Err(os_error(libc::EINTR)),
    };
    list.into_iter()
        .map(|a| {
            let addr = match a.addr {
                SockAddr::V4(h, p) => (h, p).into_pyobject(py)?.into_any().unbind(),
                SockAddr::V6(h, p, f, s) => (h, p, f, s).into_pyobject(py)?.into_any().unbind(),
                SockAddr::Other(f, b) => (f, pyo3::types::PyBytes::new(py, &b))
                    .into_pyobject(py)?
                    .into_any()
                    .unbind(),
            };
            Ok((a.family, a.socktype, a.protocol, a.canonname, addr))
        })
        .collect()
}

/// run_in_threadpool(result, func, args): func(*args) on libuv's thread pool; the
/// outcome goes to `result` (a ThreadResult), which the caller waits on.
#[pyfunction]
pub fn run_in_threadpool(
    py: Python<'_>,
    result: Py<ThreadResult>,
    func: Py<PyAny>,
    args: Py<PyTuple>,
) -> PyResult<()> {
    let hub = Hub::get(py)?;
    work::queue(hub.uv_loop().raw(), func, args, result)?;
    Ok(())
}
