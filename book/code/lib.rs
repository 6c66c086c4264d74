//! The code of the annals book. Each module is one chapter's code; the
//! chapters include anchored parts of it, and its tests run with the rest of
//! the workspace's.

pub mod account;
pub mod evolving;
pub mod in_memory;
pub mod versions;
