//! Photos students upload (for listings, later forum posts): upload with validation and re-encoding, storage
//! of a display version and a thumbnail, attachment to the object that shows them, serving under `/media/`,
//! and the sweep that deletes photos nobody attached. `docs/images.md` describes the rules.

pub mod api;
pub mod model;
pub mod process;
pub mod service;
