//! Benchmarks (see the bench branch).

fn main() {}
