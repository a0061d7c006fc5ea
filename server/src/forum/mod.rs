//! The campus circle: boards per school, posts (optionally anonymous) with photos and linked listings, votes
//! with atomic scores and a stored hot rank, and comments nested one level. `docs/forum.md` describes the rules.

pub mod api;
pub mod boards;
pub mod comments;
pub mod model;
pub mod service;
pub mod votes;
