//! End-to-end test support for Shoal.
