//! Typed calls to the gateway's Durable Objects. Routes and other objects use these, so the
//! internal paths and message types of an object are named in one place, next to nothing else.

pub mod round;
