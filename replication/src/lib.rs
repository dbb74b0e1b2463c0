//! Replication and the metadata coordinator (issue: "Metadata coordinator"):
//! nothing here is built yet; this crate exists to fix the workspace layout.
