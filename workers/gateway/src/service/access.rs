//! Services of the access area.
