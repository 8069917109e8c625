//! Views of the access area.
