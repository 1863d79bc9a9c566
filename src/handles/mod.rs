//! One module per libuv handle kind, over the shared lifecycle in `handle`.
//! All of the crate's libuv `unsafe` lives below this module.

pub mod async_wakeup;
pub mod dns;
pub mod handle;
pub mod poll;
pub mod tcp;
pub mod timer;
pub mod udp;
pub mod uv_loop;
pub mod waiters;
pub mod work;
