//! greenlet's C API, reached through its `greenlet._C_API` capsule.
//!
//! Switching through these function pointers skips the attribute lookup and
//! argument parsing that `g.switch()` costs when called through Python
//! (`bench/tasklets.py` measures both).

use pyo3::exceptions::PyImportError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::OnceLock;

type RawObj = *mut ffi::PyObject;

#[repr(C)]
#[allow(dead_code)] // the table's layout is fixed; not every entry is used
struct CApi {
    type_: *mut ffi::PyTypeObject,
    exc_error: RawObj,
    exc_exit: RawObj,
    new: unsafe extern "C" fn(run: RawObj, parent: RawObj) -> RawObj,
    get_current: unsafe extern "C" fn() -> RawObj,
    throw: unsafe extern "C" fn(g: RawObj, typ: RawObj, val: RawObj, tb: RawObj) -> RawObj,
    switch: unsafe extern "C" fn(g: RawObj, args: RawObj, kwargs: RawObj) -> RawObj,
    set_parent: unsafe extern "C" fn(g: RawObj, parent: RawObj) -> c_int,
    main: unsafe extern "C" fn(g: RawObj) -> c_int,
    started: unsafe extern "C" fn(g: RawObj) -> c_int,
    active: unsafe extern "C" fn(g: RawObj) -> c_int,
    get_parent: unsafe extern "C" fn(g: RawObj) -> RawObj,
}

struct Api(&'static CApi);
// SAFETY: the table is immutable for the life of the process and only used with the GIL held.
unsafe impl Send for Api {}
// SAFETY: as above.
unsafe impl Sync for Api {}

static API: OnceLock<Api> = OnceLock::new();

/// Imports greenlet and loads its C API; cheap after the first call.
pub fn init(py: Python<'_>) -> PyResult<()> {
    if API.get().is_some() {
        return Ok(());
    }
    py.import("greenlet")?;
    // SAFETY: PyCapsule_Import returns the capsule's pointer or NULL with an exception set.
    let table = unsafe { ffi::PyCapsule_Import(c"greenlet._C_API".as_ptr(), 0) } as *const c_void;
    if table.is_null() {
        return Err(PyErr::take(py)
            .unwrap_or_else(|| PyImportError::new_err("greenlet._C_API capsule is missing")));
    }
    // SAFETY: greenlet.h documents the capsule as an array of 12 pointers in CApi's order.
    let api: &'static CApi = unsafe { &*(table as *const CApi) };
    let _ = API.set(Api(api));
    Ok(())
}

fn api() -> &'static CApi {
    API.get()
        .expect("greenlet API used before greenlet::init")
        .0
}

/// The greenlet running now on this thread.
pub fn current(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: returns a new reference, or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, (api().get_current)()) }
}

/// `greenlet(run, parent)`.
pub fn new<'py>(
    py: Python<'py>,
    run: &Bound<'py, PyAny>,
    parent: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: both arguments are live objects; returns a new reference or NULL with an exception.
    unsafe { Bound::from_owned_ptr_or_err(py, (api().new)(run.as_ptr(), parent.as_ptr())) }
}

/// `g.switch(*args)`; returns what the greenlet that switches back here passes.
#[inline(always)]
pub fn switch<'py>(
    py: Python<'py>,
    g: &Bound<'py, PyAny>,
    args: Option<&Bound<'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let args = args.map_or(ptr::null_mut(), |a| a.as_ptr());
    // SAFETY: g is a live greenlet (checked by greenlet itself); NULL args mean "no arguments".
    unsafe { Bound::from_owned_ptr_or_err(py, (api().switch)(g.as_ptr(), args, ptr::null_mut())) }
}

/// Starts `g`: its `run` is called with `args` and `kwargs`.
pub fn start<'py>(
    py: Python<'py>,
    g: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = kwargs.map_or(ptr::null_mut(), |k| k.as_ptr());
    // SAFETY: g, args and kwargs are live objects of the types greenlet expects.
    unsafe { Bound::from_owned_ptr_or_err(py, (api().switch)(g.as_ptr(), args.as_ptr(), kwargs)) }
}

/// `g.throw(err)`: raises `err` inside `g` at the point where it is suspended.
pub fn throw<'py>(
    py: Python<'py>,
    g: &Bound<'py, PyAny>,
    err: PyErr,
) -> PyResult<Bound<'py, PyAny>> {
    let value = err.into_value(py).into_bound(py);
    let typ = value.get_type();
    let tb = value.getattr("__traceback__")?;
    // SAFETY: all three are live objects for the duration of the call.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            (api().throw)(g.as_ptr(), typ.as_ptr(), value.as_ptr(), tb.as_ptr()),
        )
    }
}

pub fn is_started(g: &Bound<'_, PyAny>) -> bool {
    // SAFETY: g is a live greenlet object.
    unsafe { (api().started)(g.as_ptr()) != 0 }
}

pub fn is_active(g: &Bound<'_, PyAny>) -> bool {
    // SAFETY: g is a live greenlet object.
    unsafe { (api().active)(g.as_ptr()) != 0 }
}

/// The greenlet's parent, or None for a main greenlet.
pub fn parent<'py>(g: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    // SAFETY: returns a new reference or NULL (possibly without an exception, per greenlet.h).
    let p = unsafe { (api().get_parent)(g.as_ptr()) };
    if p.is_null() {
        // SAFETY: clear any exception the NULL may carry; there is no parent to report.
        unsafe { ffi::PyErr_Clear() };
        None
    } else {
        // SAFETY: p is a new reference.
        Some(unsafe { Bound::from_owned_ptr(g.py(), p) })
    }
}

/// True for `greenlet.GreenletExit`, which greenlet raises in a greenlet it collects.
pub fn is_greenlet_exit(py: Python<'_>, err: &PyErr) -> bool {
    // SAFETY: the exception type is a live, immortal-in-practice type object.
    let exit = unsafe { Bound::from_borrowed_ptr(py, api().exc_exit) };
    err.get_type(py).is_subclass(&exit).unwrap_or(false)
}

/// Benchmark support: `n` round trips between the calling greenlet and a partner
/// greenlet, switching through the C API (`capi`) or through `g.switch` looked up and
/// called as Python does. Both partners run Rust code, so only the switch path differs.
#[pyfunction]
pub(crate) fn _switch_bench(py: Python<'_>, n: usize, capi: bool) -> PyResult<()> {
    init(py)?;
    let me = current(py)?;
    let partner_run = wrap_pyfunction!(_switch_bench_partner, py)?;
    let partner = new(py, partner_run.as_any(), &me)?;
    let args = pyo3::types::PyTuple::new(
        py,
        [
            me.clone().into_any(),
            n.into_pyobject(py)?.into_any(),
            pyo3::types::PyBool::new(py, capi).to_owned().into_any(),
        ],
    )?;
    switch(py, &partner, Some(args.as_any()))?;
    for _ in 0..n {
        if capi {
            switch(py, &partner, None)?;
        } else {
            partner.call_method0("switch")?;
        }
    }
    Ok(())
}

#[pyfunction]
fn _switch_bench_partner(
    py: Python<'_>,
    back: Bound<'_, PyAny>,
    n: usize,
    capi: bool,
) -> PyResult<()> {
    for _ in 0..n {
        if capi {
            switch(py, &back, None)?;
        } else {
            back.call_method0("switch")?;
        }
    }
    Ok(())
}
