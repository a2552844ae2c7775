//! The tools of .qmail files and admins (being written).
