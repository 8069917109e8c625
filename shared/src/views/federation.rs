//! Views of the federation area.
