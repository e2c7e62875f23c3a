//! rbuild-sandbox
