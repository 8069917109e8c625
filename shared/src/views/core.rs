//! Views of the core area.
