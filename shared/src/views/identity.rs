//! Views of the identity area.
