//! Black-box API tests: one binary (one link) with a module per capability.

mod admin;
mod chat;
mod forum;
mod foundation;
mod images;
mod listings;
mod moderation;
mod notifications;
mod orders;
mod payments;
mod reviews;
mod search;
mod users;
mod wechat;
mod wechatpay;
