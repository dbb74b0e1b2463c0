//! Benchmarks for Sluice; see bench/README.md.
