//! rbuild-fileop
