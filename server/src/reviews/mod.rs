//! Reviews and reputation: after a completed order the buyer and the seller rate each other, blind until both
//! have (or the 30-day window closes), and every student carries a reputation built from their deals and the
//! ratings they received — what makes a stranger on campus trustworthy. Reputation counters change in the
//! same transaction as the order or review that changes them ([`reputation`]); `campus-trade
//! recompute-reputation` rebuilds them. `docs/reviews.md` has the rules and the formula.

pub mod api;
pub mod model;
pub mod reputation;
pub mod service;
