//! HTTP tests of the simulated OpenStack: a real client (reqwest) against a sim on 127.0.0.1:0.
//! One test binary, one module per service, so the workspace links it once. Asynchronous deletes and
//! token expiry are moved on with `advance_clock`, never waited for.
// An integration test crate: helpers outside `#[test]` functions may unwrap and panic too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod cinder;
mod cleanup_clients;
mod client;
mod keystone;
mod neutron;
mod nova;
mod octavia;
mod seed_and_faults;
