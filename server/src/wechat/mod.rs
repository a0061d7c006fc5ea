//! Clients for WeChat's servers, and the sandbox that impersonates them.
//!
//! [`client`] is the production code path: reqwest, query parameters, JSON and WeChat's error codes. In sandbox
//! mode the very same client is pointed at [`sandbox`], which is mounted under `/sandbox/wechat/` and speaks the
//! same protocol, so nothing is skipped on a laptop or in the tests.

pub mod client;
pub mod pay;
pub mod push;
pub mod sandbox;
pub mod shipping;

pub use client::MiniProgram;

/// Appid the service uses in sandbox mode (shaped like a real one: `wx` + 16 hex digits).
pub const SANDBOX_APPID: &str = "wx5a4db0c0ffee0001";
/// The sandbox's app secret. Not a secret: the sandbox exists only on the machine it runs on.
pub const SANDBOX_SECRET: &str = "sandbox-app-secret-not-for-production";
/// The message-push token used in sandbox mode when `WECHAT_PUSH_TOKEN` is not set. Not a secret either: the
/// sandbox signs its pushes with it, and the service checks them with it.
pub const SANDBOX_PUSH_TOKEN: &str = "campustradesandboxpushtoken";
/// The subscribe-message template "new chat message" in sandbox mode (keywords `thing1` sender, `thing2` message,
/// `thing3` listing, `time4` time), used when `WECHAT_TEMPLATE_CHAT_MESSAGE` is not set.
pub const SANDBOX_TEMPLATE_CHAT_MESSAGE: &str = "sandbox-tmpl-chat-new-message";

/// A failed call to WeChat.
#[derive(Debug, thiserror::Error)]
pub enum WechatError {
    /// WeChat answered with a non-zero `errcode`.
    #[error("wechat error {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    /// WeChat could not be reached, or timed out.
    #[error("wechat unreachable: {0}")]
    Transport(String),
    /// WeChat answered something we could not understand.
    #[error("unexpected answer from wechat: {0}")]
    BadResponse(String),
}

impl WechatError {
    pub fn errcode(&self) -> Option<i64> {
        match self {
            WechatError::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }
}
