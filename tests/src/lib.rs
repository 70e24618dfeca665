//! Shared helpers for callstream's cross-crate tests.
