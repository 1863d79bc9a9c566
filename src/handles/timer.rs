//! uv_timer_t: wakes a parked tasklet after a delay (sleep, and socket timeouts).

use super::handle::{check, Handle, UvError};
use super::uv_loop::hub_of;
use crate::tasklet::Tasklet;
use libuv_sys2 as uv;
use pyo3::prelude::*;
use std::cell::RefCell;

#[derive(Default)]
pub struct TimerState {
    waiter: RefCell<Option<Py<Tasklet>>>,
}

pub struct Timer(Handle<uv::uv_timer_t, TimerState>);

impl Timer {
    pub fn new(l: *mut uv::uv_loop_t) -> Result<Self, UvError> {
        // SAFETY: l is a live loop; the handle memory is allocated by Handle::new.
        Handle::new(TimerState::default(), |raw| unsafe {
            uv::uv_timer_init(l, raw)
        })
        .map(Timer)
    }

    /// Wakes `waiter` (if it is still parked on the hub) after `ms` milliseconds from now.
    pub fn start(&self, ms: u64, waiter: Py<Tasklet>) -> Result<(), UvError> {
        let st = self.0.state();
        *st.waiter.borrow_mut() = Some(waiter);
        // SAFETY: live loop and live, initialised timer; on_timer matches this state type.
        check(unsafe {
            uv::uv_update_time(self.0.uv_loop());
            uv::uv_timer_start(self.0.raw(), Some(on_timer), ms, 0)
        })
        .map(|_| ())
    }

    pub fn close(self) {
        self.0.state().waiter.borrow_mut().take();
        self.0.close();
    }
}

unsafe extern "C" fn on_timer(raw: *mut uv::uv_timer_t) {
    // SAFETY: raw belongs to a live Timer (closing it stops it first).
    let st = unsafe { Handle::<uv::uv_timer_t, TimerState>::state_of(raw) };
    if let Some(t) = st.waiter.borrow_mut().take() {
        // SAFETY: the timer was initialised on a hub's loop.
        let hub = unsafe { hub_of((*raw).loop_) };
        Python::attach(|py| hub.wake(py, &t, None));
    }
}
