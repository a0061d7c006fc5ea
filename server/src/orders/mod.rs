//! Orders: the deal between a buyer and a seller about one listing, from "buy" to the hand-over on campus and
//! the seller's payout. An explicit state machine ([`model::OrderTransition`]) whose every step is one
//! conditional UPDATE with an event-log row, a system card in the buyer–seller conversation and inbox
//! notifications; a six-digit hand-over code; refunds and operator-decided disputes; and timers kept in the
//! database (payment deadline, auto-completion). `docs/orders.md` draws the diagram.

pub mod api;
pub mod model;
pub mod service;
pub mod settings;
