//! (filled in by its owner)

pub mod classify;
pub mod paths;
pub mod redirect;
