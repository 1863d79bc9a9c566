//! Tasklets parked on a handle, served in FIFO order, and what the handle tells them.

use super::uv_loop::hub_of;
use crate::tasklet::Tasklet;
use libuv_sys2 as uv;
use pyo3::prelude::*;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::raw::c_int;
use std::rc::Rc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The fd is ready: retry the syscall.
    Ready,
    /// A completion read put this many bytes into the waiter's buffer (0 = EOF).
    Read(usize),
    /// A libuv error (negative errno).
    Failed(c_int),
}

pub struct Waiter {
    pub tasklet: Py<Tasklet>,
    outcome: Cell<Option<Outcome>>,
    /// Where a completion read goes; null for a readiness wait.
    buf: *mut u8,
    len: usize,
    /// Place in line (0: the back): a waiter woken without being served keeps its
    /// place ahead of later arrivals when it queues again (see `WaitQueue::push`).
    ticket: Cell<u64>,
}

impl Waiter {
    /// Waits until the fd is ready.
    pub fn readiness(tasklet: Py<Tasklet>) -> Rc<Waiter> {
        Rc::new(Waiter {
            tasklet,
            outcome: Cell::new(None),
            buf: std::ptr::null_mut(),
            len: 0,
            ticket: Cell::new(0),
        })
    }

    /// Waits until libuv has read into `buf` (which must stay valid while queued).
    pub fn read_into(tasklet: Py<Tasklet>, buf: *mut u8, len: usize) -> Rc<Waiter> {
        Rc::new(Waiter {
            tasklet,
            outcome: Cell::new(None),
            buf,
            len,
            ticket: Cell::new(0),
        })
    }

    pub fn set_ticket(&self, ticket: u64) {
        self.ticket.set(ticket);
    }

    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome.get()
    }

    /// The buffer libuv should read into: empty for readiness waits, which makes libuv
    /// report UV_ENOBUFS instead of reading (documented for uv_alloc_cb).
    pub fn alloc(&self) -> uv::uv_buf_t {
        uv::uv_buf_t {
            base: self.buf.cast(),
            len: self.len,
        }
    }
}

/// A FIFO of waiters for one direction of one handle.
#[derive(Default)]
pub struct WaitQueue(RefCell<VecDeque<Rc<Waiter>>>);

impl WaitQueue {
    /// Queues `w` at the back, or, if it has a ticket, ahead of every waiter with a
    /// later one. Returns true if it is the only waiter.
    pub fn push(&self, w: Rc<Waiter>) -> bool {
        let mut q = self.0.borrow_mut();
        let ticket = w.ticket.get();
        let at = if ticket == 0 {
            q.len()
        } else {
            q.iter()
                .position(|x| x.ticket.get() > ticket)
                .unwrap_or(q.len())
        };
        q.insert(at, w);
        q.len() == 1
    }

    /// Removes `w` if still queued; returns true if the queue is now empty.
    pub fn remove(&self, w: &Rc<Waiter>) -> bool {
        let mut q = self.0.borrow_mut();
        if let Some(i) = q.iter().position(|x| Rc::ptr_eq(x, w)) {
            q.remove(i);
        }
        q.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.0.borrow().is_empty()
    }

    pub fn front(&self) -> Option<Rc<Waiter>> {
        self.0.borrow().front().cloned()
    }

    /// Gives the first waiter its outcome and makes its tasklet runnable.
    pub fn complete_first(&self, l: *mut uv::uv_loop_t, outcome: Outcome) {
        let first = self.0.borrow_mut().pop_front();
        if let Some(w) = first {
            finish(l, &w, outcome);
        }
    }

    /// Every waiter gets `outcome` (close, a fatal error).
    pub fn complete_all(&self, l: *mut uv::uv_loop_t, outcome: Outcome) {
        let all: Vec<_> = self.0.borrow_mut().drain(..).collect();
        for w in all {
            finish(l, &w, outcome);
        }
    }
}

fn finish(l: *mut uv::uv_loop_t, w: &Waiter, outcome: Outcome) {
    w.outcome.set(Some(outcome));
    // SAFETY: every handle with waiters lives on a hub's loop.
    let hub = unsafe { hub_of(l) };
    Python::attach(|py| hub.wake(py, &w.tasklet, None));
}
