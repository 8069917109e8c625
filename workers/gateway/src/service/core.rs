//! Services of the core area.
