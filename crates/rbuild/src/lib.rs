//! rbuild
