//! The in-process test tier: the library driven directly on temporary
//! directories. Needs no root, FUSE or sshd (only the S3 bucket tests need
//! a server: the radosgw `scripts/test.sh` starts), and runs in seconds, so
//! it is the first thing to run after a change (`cargo test --lib --test inproc`).
//! The system tier (`tests/it`) drives the binary and real mounts.
//!
//! - `bucket`: the conformance suite every remote `Bucket` runs;
//! - `common`: stores and data to test with, and the one place that reads
//!   a stored file back;
//! - `gzip`: the gzip codec's round trips on real producers' output, and
//!   its damage handling;
//! - `pack_store`: the conformance suite every `PackStore` runs;
//! - `store`: put, read, dedupe, damage and repair through `Store`.
mod bucket;
mod common;
mod gzip;
mod pack_store;
mod store;
