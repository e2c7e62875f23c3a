//! rbuild-snapshot
