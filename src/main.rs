//! The `sealed-sessions` binary (reference server and operator CLI).

fn main() {}
