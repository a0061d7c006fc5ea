//! Black-box API tests: one binary (one link) with a module per capability.

mod foundation;
mod images;
mod users;
mod wechat;
