//! Students: accounts, profiles, schools and campuses, and student verification.

pub mod api;
pub mod blocks;
pub mod model;
pub mod privacy;
pub mod schools;
pub mod service;
pub mod summary;
