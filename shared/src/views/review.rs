//! Views of the review area.
