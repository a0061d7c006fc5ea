//! Black-box API tests: one binary (one link) with a module per capability.

mod forum;
mod foundation;
mod images;
mod listings;
mod moderation;
mod notifications;
mod search;
mod users;
mod wechat;
mod wechatpay;
