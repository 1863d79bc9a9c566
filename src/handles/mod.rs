//! One module per libuv handle kind, over the shared lifecycle in `handle`.
//! All of the crate's libuv `unsafe` lives below this module.

pub mod async_wakeup;
pub mod handle;
pub mod poll;
pub mod timer;
pub mod uv_loop;
