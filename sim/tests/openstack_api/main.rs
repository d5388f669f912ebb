//! HTTP tests of the simulated OpenStack: a real client (reqwest) against a sim on 127.0.0.1:0.
//! One test binary, one module per service, so the workspace links it once.

mod cinder;
mod client;
mod keystone;
mod neutron;
mod nova;
mod seed_and_faults;
