//! qmail-local (being written).
