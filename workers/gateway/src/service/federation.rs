//! Services of the federation area.
