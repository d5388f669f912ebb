//! The `cloud-janitor` binary: parses the command line and runs the library.

fn main() {}
