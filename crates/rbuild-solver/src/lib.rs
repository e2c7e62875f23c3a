//! rbuild-solver
