//! `verify`: check a store, its index and every pack. The checks live in
//! the store (`store/verify.rs`), the only module that reads the index and
//! the packs; this is the command's entry point and its report.

use crate::error::Result;
use crate::store::Store;

pub use crate::store::VerifyReport as Report;

/// Check `store` (`full`: every record of every pack); see [`Store::verify`].
pub fn verify(store: &Store, full: bool, show_progress: bool) -> Result<Report> {
    store.verify(full, show_progress)
}
