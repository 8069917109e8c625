//! Services of the review area.
