//! deploycache: a content-addressed, deduplicating artifact store with a FUSE view.
//! (Architecture overview is written with the store; see store-layout.md.)

pub mod fingerprint;
