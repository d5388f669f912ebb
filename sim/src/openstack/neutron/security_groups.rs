//! Security groups and their rules: the project's `default` group (made on first use, never deleted
//! by members), the egress rules every new group gets, duplicate rules, and the 409 for a group a
//! port uses.

use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{bad_request, conflict, Changes, Resource, Standard};
use crate::openstack::errors::ApiError;
use crate::openstack::state::{iso, new_id, Cloud, Ctx, SecurityGroup, SecurityGroupRule};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SecurityGroupReq {
    #[serde(flatten)]
    pub standard: Standard,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RuleReq {
    #[serde(flatten)]
    pub standard: Standard,
    pub security_group_id: String,
    pub direction: String,
    pub ethertype: Option<String>,
    pub protocol: Option<Value>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<String>,
}

impl SecurityGroupReq {
    pub fn named(name: &str, tags: Vec<String>) -> Self {
        SecurityGroupReq {
            standard: Standard::named(name, tags),
        }
    }
}

impl RuleReq {
    /// Ingress of `protocol` (on `port`, when given) from anywhere.
    pub fn ingress_from_anywhere(security_group_id: &str, protocol: &str, port: Option<u16>) -> Self {
        RuleReq {
            security_group_id: security_group_id.into(),
            direction: "ingress".into(),
            protocol: Some(protocol.into()),
            port_range_min: port,
            port_range_max: port,
            remote_ip_prefix: Some("0.0.0.0/0".into()),
            ..RuleReq::default()
        }
    }
}

impl Resource for SecurityGroup {
    const NOT_FOUND: (&'static str, &'static str) =
        ("SecurityGroupNotFound", "Security group {id} does not exist");
    const SINGULAR: &'static str = "security_group";
    const FILTERS: &'static str = "name stateful shared";
    type Create = SecurityGroupReq;

    fn render(&self, cloud: &Cloud) -> Value {
        // The rules a group embeds carry `standard_attr_id` and `tags`; Neutron 29 leaves
        // `belongs_to_default_sg` null on the default group's own rules there.
        let belongs_to_default_sg = if self.name == "default" {
            Value::Null
        } else {
            json!(false)
        };
        let rules: Vec<Value> = cloud
            .security_group_rules
            .values()
            .filter(|r| r.security_group_id == self.id)
            .map(|r| {
                let mut body = r.body();
                body["belongs_to_default_sg"] = belongs_to_default_sg.clone();
                body["standard_attr_id"] = json!(r.standard_attr_id);
                body["tags"] = json!([]);
                body
            })
            .collect();
        json!({
            "id": self.id, "name": self.name, "description": self.description,
            "project_id": self.project_id, "tenant_id": self.project_id,
            "security_group_rules": rules, "stateful": true, "shared": false,
            "tags": self.tags, "created_at": iso(&self.created), "updated_at": iso(&self.updated),
            "revision_number": 1,
        })
    }

    fn create(cloud: &mut Cloud, ctx: &Ctx, req: SecurityGroupReq) -> Result<String, ApiError> {
        let project_id = req.standard.owner(ctx)?;
        cloud.ensure_default_security_group(&project_id);
        if req.standard.name == "default" {
            return Err(conflict(
                "SecurityGroupDefaultAlreadyExists",
                "Default security group already exists.",
            ));
        }
        Ok(cloud.insert_group(&project_id, req.standard))
    }

    fn update(cloud: &mut Cloud, _ctx: &Ctx, id: &str, changes: &Changes) -> Result<(), ApiError> {
        let group = cloud.record_mut::<SecurityGroup>(id)?;
        changes.rename(&mut group.name, &mut group.description, &mut group.updated);
        Ok(())
    }

    /// Deletes a group no port uses, with its rules and the rules of other groups that name it.
    fn delete(cloud: &mut Cloud, ctx: &Ctx, group_id: &str) -> Result<(), ApiError> {
        cloud.visible_or_404::<SecurityGroup>(ctx, group_id)?;
        if cloud
            .security_groups
            .get(group_id)
            .is_some_and(|g| g.name == "default")
            && !ctx.admin
        {
            return Err(conflict(
                "SecurityGroupCannotRemoveDefault",
                "Insufficient rights for removing default security group.",
            ));
        }
        if cloud
            .ports
            .values()
            .any(|p| p.security_groups.iter().any(|g| g == group_id))
        {
            return Err(conflict(
                "SecurityGroupInUse",
                format!("Security Group {group_id} in use."),
            ));
        }
        cloud
            .security_group_rules
            .retain(|_, r| r.security_group_id != group_id && r.remote_group_id.as_deref() != Some(group_id));
        cloud.security_groups.remove(group_id);
        Ok(())
    }

    /// Members' first list makes their project's `default` group, as real Neutron does.
    fn before_list(cloud: &mut Cloud, ctx: &Ctx) {
        if !ctx.admin {
            cloud.ensure_default_security_group(&ctx.project_id);
        }
    }
}

impl Resource for SecurityGroupRule {
    const NOT_FOUND: (&'static str, &'static str) = (
        "SecurityGroupRuleNotFound",
        "Security group rule {id} does not exist",
    );
    const SINGULAR: &'static str = "security_group_rule";
    const FILTERS: &'static str = "security_group_id direction ethertype protocol port_range_min port_range_max remote_ip_prefix remote_group_id";
    type Create = RuleReq;

    /// A rule as `/security-group-rules` shows it.
    fn render(&self, cloud: &Cloud) -> Value {
        let mut body = self.body();
        let default_group = cloud
            .security_groups
            .get(&self.security_group_id)
            .is_some_and(|g| g.name == "default");
        body["belongs_to_default_sg"] = json!(default_group);
        body
    }

    fn create(cloud: &mut Cloud, ctx: &Ctx, req: RuleReq) -> Result<String, ApiError> {
        cloud.visible_or_404::<SecurityGroup>(ctx, &req.security_group_id)?;
        if !matches!(req.direction.as_str(), "ingress" | "egress") {
            return Err(bad_request(format!(
                "Invalid input for direction. Reason: {} is not in valid_values.",
                req.direction
            )));
        }
        if let Some(remote) = &req.remote_group_id {
            cloud.visible_or_404::<SecurityGroup>(ctx, remote)?;
        }
        let project_id = cloud
            .security_groups
            .get(&req.security_group_id)
            .map_or_else(|| ctx.project_id.clone(), |g| g.project_id.clone());
        let protocol = match req.protocol {
            None | Some(Value::Null) => None,
            Some(Value::String(p)) if p.is_empty() || p == "any" => None,
            Some(Value::String(p)) => Some(p),
            Some(other) => Some(other.to_string()),
        };
        let rule = SecurityGroupRule {
            protocol,
            port_range_min: req.port_range_min,
            port_range_max: req.port_range_max,
            remote_ip_prefix: req.remote_ip_prefix,
            remote_group_id: req.remote_group_id,
            description: req.standard.description,
            ..SecurityGroupRule::any(
                &req.security_group_id,
                &project_id,
                &req.direction,
                req.ethertype.as_deref().unwrap_or("IPv4"),
            )
        };
        if let Some(existing) = cloud.security_group_rules.values().find(|r| r.same_as(&rule)) {
            return Err(conflict(
                "SecurityGroupRuleExists",
                format!("Security group rule already exists. Rule id is {}.", existing.id),
            ));
        }
        Ok(cloud.insert_rule(rule))
    }

    fn update(_cloud: &mut Cloud, _ctx: &Ctx, _id: &str, _changes: &Changes) -> Result<(), ApiError> {
        Err(bad_request(
            "Resource security_group_rule does not support updates",
        ))
    }

    fn delete(cloud: &mut Cloud, ctx: &Ctx, id: &str) -> Result<(), ApiError> {
        cloud.visible_or_404::<SecurityGroupRule>(ctx, id)?;
        cloud.security_group_rules.remove(id);
        Ok(())
    }
}

impl SecurityGroupRule {
    /// A rule of the group for any protocol, port and remote, not yet numbered.
    fn any(security_group_id: &str, project_id: &str, direction: &str, ethertype: &str) -> Self {
        let now = Utc::now();
        SecurityGroupRule {
            id: new_id(),
            security_group_id: security_group_id.into(),
            project_id: project_id.into(),
            direction: direction.into(),
            ethertype: ethertype.into(),
            protocol: None,
            port_range_min: None,
            port_range_max: None,
            remote_ip_prefix: None,
            remote_group_id: None,
            description: String::new(),
            standard_attr_id: 0,
            created: now,
            updated: now,
        }
    }

    /// The attributes that need nothing but the rule.
    fn body(&self) -> Value {
        json!({
            "id": self.id, "security_group_id": self.security_group_id,
            "project_id": self.project_id, "tenant_id": self.project_id,
            "direction": self.direction, "ethertype": self.ethertype, "protocol": self.protocol,
            "port_range_min": self.port_range_min, "port_range_max": self.port_range_max,
            "remote_ip_prefix": self.remote_ip_prefix, "remote_group_id": self.remote_group_id,
            "remote_address_group_id": null, "normalized_cidr": self.remote_ip_prefix,
            "description": self.description,
            "created_at": iso(&self.created), "updated_at": iso(&self.updated), "revision_number": 0,
        })
    }

    /// Whether the two rules allow the same traffic.
    fn same_as(&self, other: &SecurityGroupRule) -> bool {
        (
            &self.security_group_id,
            &self.direction,
            &self.ethertype,
            &self.protocol,
            self.port_range_min,
            self.port_range_max,
            &self.remote_ip_prefix,
            &self.remote_group_id,
        ) == (
            &other.security_group_id,
            &other.direction,
            &other.ethertype,
            &other.protocol,
            other.port_range_min,
            other.port_range_max,
            &other.remote_ip_prefix,
            &other.remote_group_id,
        )
    }
}

impl Cloud {
    /// Numbers the rule (Neutron's `standard_attr_id`) and stores it; returns its id.
    fn insert_rule(&mut self, rule: SecurityGroupRule) -> String {
        let rule = SecurityGroupRule {
            standard_attr_id: self.new_standard_attr_id(),
            ..rule
        };
        let id = rule.id.clone();
        self.security_group_rules.insert(id.clone(), rule);
        id
    }

    /// Stores a group of the project with the two egress rules real Neutron gives every new group.
    fn insert_group(&mut self, project_id: &str, standard: Standard) -> String {
        let tags = standard.tags();
        let group_id = self.insert_new(|id, now| SecurityGroup {
            id,
            name: standard.name,
            description: standard.description,
            project_id: project_id.into(),
            tags,
            created: now,
            updated: now,
        });
        for ethertype in ["IPv4", "IPv6"] {
            self.insert_rule(SecurityGroupRule::any(&group_id, project_id, "egress", ethertype));
        }
        group_id
    }

    /// The project's `default` security group, created on first use as real Neutron does: its two
    /// egress rules, and ingress from its own members.
    pub(crate) fn ensure_default_security_group(&mut self, project_id: &str) -> String {
        if let Some(group) = self
            .security_groups
            .values()
            .find(|g| g.project_id == project_id && g.name == "default")
        {
            return group.id.clone();
        }
        let standard = Standard {
            description: "Default security group".into(),
            ..Standard::named("default", Vec::new())
        };
        let group_id = self.insert_group(project_id, standard);
        for ethertype in ["IPv4", "IPv6"] {
            self.insert_rule(SecurityGroupRule {
                remote_group_id: Some(group_id.clone()),
                ..SecurityGroupRule::any(&group_id, project_id, "ingress", ethertype)
            });
        }
        group_id
    }
}
