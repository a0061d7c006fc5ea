//! Listings: items for sale with their photos, categories and meet-up places, the status state machine,
//! browsing, favourites and view counts.

pub mod api;
pub mod catalogue;
pub mod model;
pub mod service;
