//! Black-box API tests: one binary (one link) with a module per capability.

mod chat;
mod forum;
mod foundation;
mod images;
mod listings;
mod moderation;
mod notifications;
mod users;
mod wechat;
