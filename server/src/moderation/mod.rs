//! Content security: WeChat's text check (`msg_sec_check`) and image check (`media_check_async` and its
//! `wxa_media_check` push), the operators' local word blocklist, and the message-push endpoint WeChat calls.
//! `docs/content-security.md` describes the flow and how to set up the push in the Mini Program admin console.

pub mod hooks;
pub mod model;
pub mod push;
pub mod queue;
pub mod reports;
pub mod service;

pub use service::{Scene, Verdict, check_text, submit_media_check};
