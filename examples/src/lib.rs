//! Shared pieces of the example binaries: the LUN specification parser and device builder.

pub mod cli;
pub mod daemon;
pub mod metrics;
pub mod scstconf;
pub mod spec;

/// The README's code examples, compiled and run as doc tests.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
