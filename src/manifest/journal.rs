//! Where the index writes its manifest records: the [`Journal`] trait. The
//! store implements it (`store/journal.rs`), appending to a pack of the
//! process's own through the store's pack store.

use crate::error::Result;
use crate::pack::PackName;

/// Where the index writes its manifest records. The store's
/// implementation is `store::journal::ManifestLog`.
pub trait Journal: Send {
    /// Called before the transaction a record will be part of begins: keeps
    /// gc and the orphan sweep from taking a pack written to now for a
    /// crashed writer's leftovers until [`Journal::release`].
    fn hold(&mut self) -> Result<()>;
    /// That transaction has ended (committed or not).
    fn release(&mut self);
    /// Append one record payload; returns the pack it went to. Not durable
    /// until [`Journal::sync`]. The records written between one `hold` and
    /// its `release` (one transaction's) all go to one pack.
    fn write(&mut self, payload: &[u8]) -> Result<PackName>;
    /// Make every record written so far durable.
    fn sync(&mut self) -> Result<()>;
    /// Between transactions: let go of the pack records are appended to
    /// (every record in it was synced before its commit), so that gc may
    /// rewrite or unlink it once its records are dead; the next record
    /// starts a new pack.
    fn let_go(&mut self) {}
}
