//! Fingerprint vectors from ../shared/fixtures/fingerprints.
