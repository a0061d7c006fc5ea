//! The money of orders, through WeChat Pay: the payment of an order (prepay, the signed `wx.requestPayment`
//! parameters, notifications, active queries, closing), refunds, the payout to the seller through merchant
//! transfer bills, the Mini Program shipping upload, and the sweeps that retry and reconcile all of them.
//! The protocol (signing, verification, decryption) is [`crate::wechat::pay`]; what a payment means for the
//! order is decided by [`crate::orders::service`]. `docs/payments.md` explains the money flow.

pub mod model;
pub mod notify;
pub mod payouts;
pub mod refunds;
pub mod service;
pub mod shipping;

use crate::{error::AppError, wechat::pay::PayError};

/// WeChat Pay orders must stay below this (fen): merchant transfers of 2,000 yuan or more need the payee's
/// encrypted real name, which the client does not send, so a dearer payout could never be made.
pub const MAX_WECHAT_PAY_FEN: i64 = 200_000;

/// The answer a student gets when a WeChat Pay call failed (details go to the log only).
pub fn pay_error(what: &str, e: &PayError) -> AppError {
    tracing::warn!(error = %e, "WeChat Pay call failed: {what}");
    AppError::unavailable(
        "wechat_pay_unavailable",
        format!("WeChat Pay did not answer as expected ({what}); please try again shortly"),
    )
}

/// Whether WeChat definitely refused (an error body that is not a timeout, 5xx, `SYSTEM_ERROR` or rate limit):
/// nothing was created.
pub fn definitely_refused(e: &PayError) -> bool {
    matches!(e, PayError::Wechat { .. }) && !e.outcome_unknown()
}

/// Whether the error is WeChat's "no such thing" (`ORDER_NOT_EXIST`, `NOT_FOUND`, …).
pub fn not_found(e: &PayError) -> bool {
    matches!(e, PayError::Wechat { status, code, .. }
        if *status == 404 || code == "ORDER_NOT_EXIST" || code == "NOT_FOUND" || code == "RESOURCE_NOT_EXISTS")
}

/// `prefix` followed by `len` random letters and digits (WeChat's merchant numbers allow `[0-9A-Za-z]`).
pub fn merchant_no(prefix: &str, len: usize) -> String {
    use rand::Rng;
    const ALNUM: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    for _ in 0..len {
        s.push(ALNUM[rng.random_range(0..ALNUM.len())] as char);
    }
    s
}

/// Backoff of the n-th retry: 30 s doubling, at most an hour.
pub fn backoff(attempt: i32) -> chrono::Duration {
    let exp = attempt.clamp(1, 8) as u32 - 1;
    chrono::Duration::seconds((30i64 << exp).min(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchant_numbers_fit_wechat_rules() {
        let no = merchant_no("CT", 24);
        assert_eq!(no.len(), 26);
        assert!(no.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(merchant_no("CT", 24), no);
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert_eq!(backoff(1), chrono::Duration::seconds(30));
        assert_eq!(backoff(2), chrono::Duration::seconds(60));
        assert_eq!(backoff(20), chrono::Duration::seconds(3600));
    }

    #[test]
    fn refusals_are_told_apart_from_uncertainty() {
        let refused = PayError::Wechat {
            status: 400,
            code: "PARAM_ERROR".into(),
            message: "bad".into(),
        };
        let busy = PayError::Wechat {
            status: 500,
            code: "SYSTEM_ERROR".into(),
            message: "busy".into(),
        };
        assert!(definitely_refused(&refused));
        assert!(!definitely_refused(&busy));
        assert!(!definitely_refused(&PayError::Transport("timeout".into())));
        assert!(not_found(&PayError::Wechat {
            status: 404,
            code: "ORDER_NOT_EXIST".into(),
            message: "no".into()
        }));
    }
}
