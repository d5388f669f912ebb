//! cloud-janitor: finds what interrupted CI jobs left in OpenStack and Proxmox VE and deletes it in
//! dependency order.
#![forbid(unsafe_code)]

#[cfg(feature = "sim")]
pub mod bench;
pub mod commands;
pub mod config;
pub mod cputime;
pub mod daemon;
#[cfg(feature = "sim")]
pub mod demo;
pub mod events;
pub mod executor;
pub mod expiry;
pub mod explain;
pub mod history;
pub mod metrics;
pub mod model;
pub mod outcome;
pub mod pass;
pub mod planner;
pub mod policy;
pub mod poll;
pub mod provider;
pub mod reload;
pub mod report;
pub mod schedule;
pub mod selection;
pub mod setup;
pub mod shutdown;
