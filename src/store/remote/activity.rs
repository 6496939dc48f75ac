//! What a host tells the remote's gc of its own use of the cache
//! (store-layout.md, "gc of a remote"): when it last used each artifact
//! (`uses/<host>.uses`, for eviction by least recent use across hosts),
//! and which artifacts it has open right now (`leases/<host>.lease`,
//! which keeps them from eviction while the lease is good).

use crate::error::Result;
use crate::remote::commit;
use crate::remote::gc::{self as remote_gc, ArtifactRef, Lease, Uses};
use crate::store::{lock, Store};

impl Store {
    /// Artifacts this process has a file of open for reading.
    pub fn open_artifacts(&self) -> Vec<String> {
        let mut v: Vec<String> = lock(&self.core.open_artifacts).keys().cloned().collect();
        v.sort();
        v
    }

    /// Write this host's uses to the remote when they changed since this
    /// process last wrote them (a command that read an artifact; a lease
    /// is a mount's, which holds files open between rounds).
    pub fn publish_uses(&self) -> Result<()> {
        let link = self.link()?;
        self.flush_uses()?;
        let uses = Uses {
            host: commit::host_id(),
            used: self
                .index()
                .artifact_uses()?
                .into_iter()
                .map(|(ns, name, t)| (ArtifactRef { ns, name }, t))
                .collect(),
        };
        let digest = *blake3::hash(&serde_json::to_vec(&uses).expect("uses serialize")).as_bytes();
        let mut last = lock(&link.uses_written);
        if *last == Some(digest) {
            return Ok(());
        }
        remote_gc::write(&*link.bucket, &remote_gc::uses_key(&uses.host), &uses)?;
        *last = Some(digest);
        Ok(())
    }

    /// Renew this host's lease on the artifacts it has open (a mount asks
    /// each sync round; it is written when they changed or a quarter of
    /// its life has passed); with none open, delete the lease once.
    pub fn renew_lease(&self) -> Result<()> {
        let link = self.link()?;
        let host = commit::host_id();
        let key = remote_gc::lease_key(&host);
        let open = self.open_artifacts();
        let mut leased = lock(&link.leased);
        if open.is_empty() {
            if leased.is_some() {
                link.bucket.delete(&key)?;
                *leased = None;
            }
            return Ok(());
        }
        // Unchanged and written within a quarter of its life: good still.
        if let Some((names, at)) = &*leased {
            if *names == open && at.elapsed() < remote_gc::LEASE_TTL / 4 {
                return Ok(());
            }
        }
        let lease = Lease {
            host,
            ttl_secs: remote_gc::LEASE_TTL.as_secs(),
            open: open
                .iter()
                .map(|name| ArtifactRef {
                    ns: self.namespace().to_owned(),
                    name: name.clone(),
                })
                .collect(),
        };
        remote_gc::write(&*link.bucket, &key, &lease)?;
        *leased = Some((open, std::time::Instant::now()));
        Ok(())
    }
}
