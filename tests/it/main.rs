//! One integration-test binary; modules share the helpers in `common`.
mod fingerprint;
