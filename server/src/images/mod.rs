//! TEMPORARY stand-in (replaced by the images branch at merge).
pub mod api;
pub mod model;
pub mod service;
