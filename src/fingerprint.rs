//! Legacy OPNFV Fuel deploy-cache fingerprints (issue 4). Owned by the fingerprint work.
