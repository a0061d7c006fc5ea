//! Black-box API tests: one binary (one link) with a module per capability.

mod forum;
mod foundation;
mod images;
mod listings;
mod moderation;
mod notifications;
mod orders;
mod payments;
mod users;
mod wechat;
mod wechatpay;
