//! rbuild-registry
