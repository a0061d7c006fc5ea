//! Buyer–seller conversations about a listing: messages, offers, system cards, and their real-time delivery.
//!
//! Other capabilities (orders) talk to chat only through [`cards`].

pub mod cards;
