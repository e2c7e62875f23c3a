//! rbuild-graph
