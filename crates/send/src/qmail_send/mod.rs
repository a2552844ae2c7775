//! qmail-send (being written).
