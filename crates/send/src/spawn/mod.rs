//! qmail-start, qmail-lspawn, qmail-rspawn, qmail-clean (being written).
