//! The in-app inbox: what happened to a student's listings, verification and posts while they were away.
//! Other capabilities call [`service::notify`] inside their own transaction, so a notification exists exactly
//! when the change it reports was committed. WeChat subscribe messages go through the durable [`outbox`], queued
//! the same way.

pub mod api;
pub mod model;
pub mod outbox;
pub mod price_drops;
pub mod service;
pub mod subscribe;
pub mod watermark;
