//! One integration-test binary; modules share the helpers in `common`.
//! Tests drive the real `deploycache` binary against real stores on disk.
mod common;
mod fingerprint;
mod gc;
mod gc_checkpoint;
mod gc_reclaim;
mod gc_scp;
mod gc_stress;
mod gzip;
mod hardening_store;
mod mount;
mod mount_hardening;
mod package;
mod rebuild;
mod remote;
mod remote_gc;
mod remote_server;
mod store;
