//! Services of the identity area.
