//! rbuild-oci
