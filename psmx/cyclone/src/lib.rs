//! Shared pieces of the Cyclone tests.
