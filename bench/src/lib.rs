//! Benchmark support for `scripts/bench`: a closed-loop HTTP load generator and side-by-side
//! reports. Benchmarks print figures; nothing here asserts timings.
#![forbid(unsafe_code)]

pub mod load;
pub mod report;
pub mod session;
pub mod stack;
pub mod workerd;
