//! uv_async_t: the one thread-safe way into a hub. Another OS thread posts the id of
//! a finished result and calls `uv_async_send`; the hub's callback (on the hub's own
//! thread) wakes the tasklet waiting for that id.

use super::handle::{Handle, UvError};
use super::uv_loop::hub_of;
use libuv_sys2 as uv;
use pyo3::prelude::*;
use std::cell::Cell;
use std::sync::{Arc, Mutex};

/// Where other threads drop finished ids. `None` once the hub is gone.
pub struct Inbox {
    posted: Mutex<Option<Posted>>,
}

struct Posted {
    ids: Vec<u64>,
    tasks: Vec<Task>,
    handle: *mut uv::uv_async_t,
}

/// Work another thread hands to the hub's own thread: closing handles that belong to
/// this loop. Never user code.
pub type Task = Box<dyn FnOnce() + Send>;
// SAFETY: the pointer is only used for uv_async_send, which libuv documents as thread-safe,
// and only while the mutex proves the handle is still open.
unsafe impl Send for Posted {}

impl Inbox {
    /// Queues `id` for the hub and wakes it. Returns false if the hub has closed.
    pub fn post(&self, id: u64) -> bool {
        let mut guard = self.posted.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(p) => {
                p.ids.push(id);
                // SAFETY: the handle is open while `posted` is Some (see AsyncWakeup::close).
                unsafe { uv::uv_async_send(p.handle) };
                true
            }
            None => false,
        }
    }

    /// Runs `task` on the hub's thread. Gives it back if the hub has closed.
    pub fn post_task(&self, task: Task) -> Result<(), Task> {
        let mut guard = self.posted.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(p) => {
                p.tasks.push(task);
                // SAFETY: the handle is open while `posted` is Some.
                unsafe { uv::uv_async_send(p.handle) };
                Ok(())
            }
            None => Err(task),
        }
    }

    fn take_tasks(&self) -> Vec<Task> {
        let mut guard = self.posted.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_mut()
            .map(|p| std::mem::take(&mut p.tasks))
            .unwrap_or_default()
    }

    fn take_ids(&self) -> Vec<u64> {
        let mut guard = self.posted.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_mut()
            .map(|p| std::mem::take(&mut p.ids))
            .unwrap_or_default()
    }
}

pub struct AsyncState {
    inbox: Arc<Inbox>,
}

pub struct AsyncWakeup {
    handle: Handle<uv::uv_async_t, AsyncState>,
    /// Tasklets waiting for another thread; while > 0 the handle keeps the loop alive.
    waiters: Cell<usize>,
}

impl AsyncWakeup {
    pub fn new(l: *mut uv::uv_loop_t) -> Result<Self, UvError> {
        let inbox = Arc::new(Inbox {
            posted: Mutex::new(None),
        });
        let state = AsyncState {
            inbox: inbox.clone(),
        };
        // SAFETY: l is a live loop; on_async matches this state type.
        let handle = Handle::new(state, |raw| unsafe {
            uv::uv_async_init(l, raw, Some(on_async))
        })?;
        handle.set_ref(false);
        *inbox.posted.lock().unwrap() = Some(Posted {
            ids: Vec::new(),
            tasks: Vec::new(),
            handle: handle.raw(),
        });
        Ok(AsyncWakeup {
            handle,
            waiters: Cell::new(0),
        })
    }

    pub fn inbox(&self) -> Arc<Inbox> {
        self.handle.state().inbox.clone()
    }

    /// Counts a tasklet that waits for another thread: the loop stays alive meanwhile.
    pub fn add_waiter(&self) {
        self.waiters.set(self.waiters.get() + 1);
        self.handle.set_ref(true);
    }

    pub fn remove_waiter(&self) {
        let n = self.waiters.get().saturating_sub(1);
        self.waiters.set(n);
        if n == 0 {
            self.handle.set_ref(false);
        }
    }

    /// Refuses further posts; called before the handle is closed with its loop.
    pub fn close_inbox(&self) {
        *self
            .handle
            .state()
            .inbox
            .posted
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }
}

unsafe extern "C" fn on_async(raw: *mut uv::uv_async_t) {
    // SAFETY: raw belongs to a live AsyncWakeup.
    let st = unsafe { Handle::<uv::uv_async_t, AsyncState>::state_of(raw) };
    for task in st.inbox.take_tasks() {
        task();
    }
    let ids = st.inbox.take_ids();
    if ids.is_empty() {
        return;
    }
    // SAFETY: the handle was initialised on a hub's loop.
    let hub = unsafe { hub_of((*raw).loop_) };
    Python::attach(|py| {
        for id in ids {
            hub.wake_thread_waiter(py, id);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handles::uv_loop::Loop;

    #[test]
    fn inbox_refuses_posts_once_closed() {
        let l = Loop::new().unwrap();
        let w = AsyncWakeup::new(l.raw()).unwrap();
        let inbox = w.inbox();
        assert!(inbox.post(7));
        assert_eq!(inbox.take_ids(), vec![7]);
        assert!(
            !l.alive(),
            "an idle async handle does not keep the loop alive"
        );
        w.add_waiter();
        assert!(l.alive());
        w.remove_waiter();
        assert!(!l.alive());
        w.close_inbox();
        assert!(!inbox.post(8));
        l.close_at_thread_exit();
        std::mem::forget(w); // as at thread exit: the loop closed the handle
    }

    #[test]
    fn posts_from_other_threads_arrive() {
        let l = Loop::new().unwrap();
        let w = AsyncWakeup::new(l.raw()).unwrap();
        let inbox = w.inbox();
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let inbox = inbox.clone();
                std::thread::spawn(move || assert!(inbox.post(i)))
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut ids = inbox.take_ids();
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2, 3]);
        w.close_inbox();
        l.close_at_thread_exit();
        std::mem::forget(w);
    }
}
