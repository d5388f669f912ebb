//! What a CI job that died before tagging leaves: untagged resources that look leaked, old enough
//! for the janitor's suspected-leak rule, for the demo and tests.

use super::neutron::FloatingIpReq;
use super::state::{Ctx, FloatingIp, Record};
use super::{OpenStackSim, SimError};

impl OpenStackSim {
    /// Allocates an untagged floating IP with no port in project `demo`, on `public`, made `age`
    /// old; returns its id.
    pub fn seed_idle_floating_ip(&self, age: chrono::Duration) -> Result<String, SimError> {
        let public = self.public_network_id();
        let mut cloud = self.inner.cloud();
        let id = cloud
            .create::<FloatingIp>(&Ctx::demo(), FloatingIpReq::new(&public, None, Vec::new()))
            .map_err(|error| SimError {
                action: "allocate an idle floating IP",
                status: error.status.as_u16(),
                message: error.message,
            })?;
        if let Some(fip) = cloud.floating_ips.get_mut(&id) {
            fip.backdate(age);
        }
        Ok(id)
    }
}
