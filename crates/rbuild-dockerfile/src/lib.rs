//! rbuild-dockerfile
