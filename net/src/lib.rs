//! The Kafka protocol server (issue: "Kafka protocol server"): nothing here
//! is built yet; this crate exists to fix the workspace layout.
