//! Who is calling: WeChat login (`code2session`), sessions, the bearer-token extractor that every student
//! endpoint uses, and the login rate limits.

pub mod api;
pub mod extract;
pub mod service;
pub mod sessions;

pub use extract::{CurrentUser, StudentAuth};
