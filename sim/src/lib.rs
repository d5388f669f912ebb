//! Simulated cloud APIs (OpenStack and Proxmox VE) served over real HTTP on 127.0.0.1.
//!
//! # Layout
//! - `clock`: the simulated clock both simulators read, which tests advance instead of sleeping.
//! - `faults`: per-path fault and latency injection shared by both simulators.
//! - `openstack`: Keystone v3, Nova, Neutron and Cinder.
//! - `proxmox`: the Proxmox VE API (`/api2/json`).
//! - `wait`: `wait_for`, the one helper tests use to wait for what happens in real time.
#![forbid(unsafe_code)]

pub mod clock;
pub mod faults;
pub mod openstack;
pub mod proxmox;
pub mod wait;
