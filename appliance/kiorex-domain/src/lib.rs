//! Kiorex domain rules. Nothing here performs I/O or reads the clock: callers pass the time in,
//! so every rule is tested fast and reads like the hospital's own policy.

pub mod audit;
pub mod duplicates;
pub mod identity;
pub mod index;
pub mod mrn;
pub mod names;
pub mod observation;
pub mod permission;
pub mod query;
