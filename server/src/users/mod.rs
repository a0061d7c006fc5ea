//! Students: accounts, profiles, schools and campuses, and student verification.

pub mod api;
pub mod model;
pub mod service;
