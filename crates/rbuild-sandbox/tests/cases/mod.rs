//! The test cases, grouped by subject.

pub(crate) mod io;
pub(crate) mod layers;
pub(crate) mod process;
pub(crate) mod stdio;
