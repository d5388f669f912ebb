//! The planner: one petgraph dependency graph of every discovered resource, which selected resources
//! can be attempted, and the order to attempt them in. Pure: no I/O, so it is tested with plain values.

use std::collections::{BTreeSet, HashMap};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;
use serde::Serialize;

use crate::model::{Removal, Resource, ResourceKey};
use crate::outcome::LeftReason;
use crate::selection::Verdict;

/// What the plan does with one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Disposition {
    /// Selected: the executor deletes it once everything before it is gone.
    Delete,
    /// Not selected itself, but removed by its selected owner: the executor waits for it to vanish.
    AwaitRemoval { owner: ResourceKey },
    /// Not selected: never touched.
    Keep,
    /// Selected, but cannot be attempted this pass: something that stays uses it
    /// ([`LeftReason::InUse`]), or it is part of a reference cycle ([`LeftReason::Cycle`]).
    Held {
        #[serde(flatten)]
        reason: LeftReason,
    },
}

impl Disposition {
    /// True for the nodes the executor acts on.
    pub fn is_actionable(&self) -> bool {
        matches!(self, Disposition::Delete | Disposition::AwaitRemoval { .. })
    }
}

/// One node of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlanNode {
    pub resource: Resource,
    /// The selection verdict; `None` for a stand-in of a user the provider did not list.
    #[serde(skip)]
    pub verdict: Option<Verdict>,
    pub disposition: Disposition,
}

impl PlanNode {
    pub fn is_selected(&self) -> bool {
        self.verdict.as_ref().is_some_and(Verdict::is_selected)
    }
}

/// The dependency graph and what to do with each node. An edge `a -> b` means `a` uses `b`, so `a`
/// must be gone before `b` is deleted.
#[derive(Debug, Clone)]
pub struct Plan {
    pub graph: DiGraph<PlanNode, ()>,
    /// The actionable nodes in a topological order (a valid delete order if run one at a time).
    pub order: Vec<NodeIndex>,
}

impl Plan {
    /// Builds the plan from every discovered resource and its verdict (the two slices run in step).
    pub fn build(resources: Vec<Resource>, verdicts: Vec<Verdict>) -> Plan {
        // Sized up front: a graph grown by doubling holds up to twice the nodes it needs, and each
        // node holds a whole resource.
        let edges = resources
            .iter()
            .map(|r| r.references.len() + r.used_by.len())
            .sum();
        let mut graph: DiGraph<PlanNode, ()> = DiGraph::with_capacity(resources.len(), edges);
        let mut index: HashMap<ResourceKey, NodeIndex> = HashMap::with_capacity(resources.len());
        // Insertion order decides tie-breaks below; sorting makes plans reproducible.
        let (mut resources, mut verdicts) = (resources, verdicts);
        sort_together(&mut resources, &mut verdicts);
        for (resource, verdict) in resources.into_iter().zip(verdicts) {
            if index.contains_key(&resource.key) {
                continue; // a provider listing the same resource twice (pagination overlap)
            }
            let key = resource.key.clone();
            let node = graph.add_node(PlanNode {
                resource,
                verdict: Some(verdict),
                disposition: Disposition::Keep,
            });
            index.insert(key, node);
        }
        add_edges(&mut graph, &mut index);
        assign_dispositions(&mut graph);
        let order = topological_order(&graph);
        Plan { graph, order }
    }

    /// The node of a resource.
    pub fn node(&self, key: &ResourceKey) -> Option<NodeIndex> {
        self.graph
            .node_indices()
            .find(|&n| &self.graph[n].resource.key == key)
    }

    /// Every node, in graph order.
    pub fn nodes(&self) -> impl Iterator<Item = &PlanNode> {
        self.graph.node_weights()
    }
}

/// Sorts `resources` by key (stable) and `verdicts` with them, in place: no second copy of the
/// resources is made.
fn sort_together(resources: &mut [Resource], verdicts: &mut [Verdict]) {
    let mut order: Vec<usize> = (0..resources.len()).collect();
    order.sort_by(|&a, &b| resources[a].key.cmp(&resources[b].key));
    // Position `p` takes the element at `order[p]`: follow each cycle of the permutation, marking a
    // position done by pointing it at itself.
    for start in 0..order.len() {
        let mut current = start;
        loop {
            let next = order[current];
            order[current] = current;
            if next == start {
                break;
            }
            resources.swap(current, next);
            verdicts.swap(current, next);
            current = next;
        }
    }
}

/// Adds an edge for every reference and every user, in node order. Keys are resolved to nodes as
/// they are met, so no key is copied but a stand-in's.
fn add_edges(graph: &mut DiGraph<PlanNode, ()>, index: &mut HashMap<ResourceKey, NodeIndex>) {
    let mut edges: Vec<(NodeIndex, NodeIndex)> = Vec::new();
    for node in (0..graph.node_count()).map(NodeIndex::new) {
        // A reference to something the provider did not list has nothing to order against.
        for target in &graph[node].resource.references {
            if let Some(&to) = index.get(target) {
                edges.push((node, to));
            }
        }
        // A user it did not list still holds the resource: it becomes an unselected stand-in.
        for at in 0..graph[node].resource.used_by.len() {
            let user = &graph[node].resource.used_by[at];
            let from = match index.get(user) {
                Some(&from) => from,
                None => {
                    let key = user.clone();
                    let mut stand_in = Resource::new(key.clone(), "");
                    stand_in.status = "not listed".to_string();
                    let from = graph.add_node(PlanNode {
                        resource: stand_in,
                        verdict: None,
                        disposition: Disposition::Keep,
                    });
                    index.insert(key, from);
                    from
                }
            };
            edges.push((from, node));
        }
    }
    for (from, to) in edges {
        if from != to && graph.find_edge(from, to).is_none() {
            graph.add_edge(from, to, ());
        }
    }
}

fn assign_dispositions(graph: &mut DiGraph<PlanNode, ()>) {
    let selected = |graph: &DiGraph<PlanNode, ()>, node: NodeIndex| graph[node].is_selected();
    // Tarjan yields strongly connected components sinks first; reversed, users come before what they use.
    let mut components = tarjan_scc(&*graph);
    components.reverse();
    for component in components {
        let in_cycle = component.len() > 1;
        if in_cycle {
            let mut members: Vec<ResourceKey> =
                component.iter().map(|&n| graph[n].resource.key.clone()).collect();
            members.sort();
            for &node in &component {
                graph[node].disposition = if selected(graph, node) {
                    Disposition::Held {
                        reason: LeftReason::Cycle {
                            members: members.clone(),
                        },
                    }
                } else {
                    Disposition::Keep
                };
            }
            continue;
        }
        let node = component[0];
        let owner = match &graph[node].resource.removal {
            Removal::WithOwner(owner) => graph
                .neighbors_directed(node, Direction::Incoming)
                .find(|&p| &graph[p].resource.key == owner),
            Removal::Delete => None,
        };
        let staying_user = |graph: &DiGraph<PlanNode, ()>| {
            let mut users: Vec<NodeIndex> = graph
                .neighbors_directed(node, Direction::Incoming)
                .filter(|&p| !graph[p].disposition.is_actionable())
                .collect();
            users.sort_by(|a, b| graph[*a].resource.key.cmp(&graph[*b].resource.key));
            users.first().map(|&p| graph[p].resource.key.clone())
        };
        graph[node].disposition = if selected(graph, node) {
            match staying_user(graph) {
                Some(by) => Disposition::Held {
                    reason: LeftReason::InUse { by },
                },
                None => Disposition::Delete,
            }
        } else {
            // An unselected resource its selected owner removes (a port Nova made for a server) goes
            // with the owner, whatever else uses it; the executor then waits for it to vanish.
            match owner {
                Some(owner) if graph[owner].disposition == Disposition::Delete => Disposition::AwaitRemoval {
                    owner: graph[owner].resource.key.clone(),
                },
                _ => Disposition::Keep,
            }
        };
    }
}

/// Kahn's algorithm over the actionable nodes, always taking the smallest ready key next, so the
/// order is stable and reads naturally (servers before ports before networks within a cloud).
fn topological_order(graph: &DiGraph<PlanNode, ()>) -> Vec<NodeIndex> {
    let actionable = |n: NodeIndex| graph[n].disposition.is_actionable();
    let mut waiting: HashMap<NodeIndex, usize> = HashMap::new();
    let mut ready: BTreeSet<(&ResourceKey, NodeIndex)> = BTreeSet::new();
    for node in graph.node_indices().filter(|&n| actionable(n)) {
        let blockers = graph
            .neighbors_directed(node, Direction::Incoming)
            .filter(|&p| actionable(p))
            .count();
        if blockers == 0 {
            ready.insert((&graph[node].resource.key, node));
        } else {
            waiting.insert(node, blockers);
        }
    }
    let mut order = Vec::new();
    while let Some((_, node)) = ready.pop_first() {
        order.push(node);
        for next in graph.neighbors_directed(node, Direction::Outgoing) {
            if let Some(count) = waiting.get_mut(&next) {
                *count -= 1;
                if *count == 0 {
                    waiting.remove(&next);
                    ready.insert((&graph[next].resource.key, next));
                }
            }
        }
    }
    order
}

#[cfg(test)]
#[allow(clippy::cloned_ref_to_slice_refs)] // `&[key.clone()]` reads better in fixtures
mod tests {
    use super::*;
    use crate::model::fixtures::{key, res};
    use crate::model::Kind;

    fn plan(resources: Vec<(Resource, bool)>) -> Plan {
        let verdicts = resources
            .iter()
            .map(|(_, s)| {
                if *s {
                    Verdict::Selected
                } else {
                    Verdict::NotMatched("tags_all")
                }
            })
            .collect();
        Plan::build(resources.into_iter().map(|(r, _)| r).collect(), verdicts)
    }

    fn order(plan: &Plan) -> Vec<String> {
        plan.order
            .iter()
            .map(|&n| plan.graph[n].resource.key.to_string())
            .collect()
    }

    fn disposition(plan: &Plan, k: &ResourceKey) -> Disposition {
        plan.nodes()
            .find(|n| &n.resource.key == k)
            .map(|n| n.disposition.clone())
            .expect("node exists")
    }

    #[test]
    fn resources_and_their_verdicts_are_sorted_together_by_key() {
        // Each verdict names its resource's place in the input, so the pairing can be checked.
        const INPUT: [&str; 6] = ["input 0", "input 1", "input 2", "input 3", "input 4", "input 5"];
        let ids = ["e", "b", "d", "a", "c", "b"];
        let mut resources: Vec<Resource> = ids.iter().map(|id| res(Kind::Port, id, &[])).collect();
        let mut verdicts: Vec<Verdict> = INPUT.iter().map(|&at| Verdict::NotMatched(at)).collect();
        sort_together(&mut resources, &mut verdicts);
        let pairs: Vec<(&str, &Verdict)> = resources
            .iter()
            .map(|r| r.key.id.as_str())
            .zip(&verdicts)
            .collect();
        let expected = [("a", 3), ("b", 1), ("b", 5), ("c", 4), ("d", 2), ("e", 0)]
            .map(|(id, at)| (id, Verdict::NotMatched(INPUT[at])));
        let expected: Vec<(&str, &Verdict)> = expected.iter().map(|(id, v)| (*id, v)).collect();
        assert_eq!(
            pairs, expected,
            "sorted by key, stable, each verdict with its resource"
        );
    }

    /// The CI topology: a server on a port, the port on a subnet with a security group, a router
    /// interface on the subnet, a floating IP on the port routed by the router.
    #[test]
    fn the_ci_topology_is_ordered_dependents_first() {
        let (net, sub, sg) = (
            key(Kind::Network, "net"),
            key(Kind::Subnet, "sub"),
            key(Kind::SecurityGroup, "sg"),
        );
        let (port, router, iface) = (
            key(Kind::Port, "port"),
            key(Kind::Router, "rtr"),
            key(Kind::RouterInterface, "rtr:sub"),
        );
        let mut server = res(Kind::Server, "vm", &[]);
        server.tags = vec!["ci".into()];
        let mut port_r = res(Kind::Port, "port", &[sg.clone(), sub.clone(), net.clone()]);
        port_r.used_by = vec![server.key.clone()];
        let plan = plan(vec![
            (server, true),
            (port_r, true),
            (
                res(
                    Kind::FloatingIp,
                    "fip",
                    &[port.clone(), router.clone(), iface.clone()],
                ),
                true,
            ),
            (
                res(
                    Kind::RouterInterface,
                    "rtr:sub",
                    &[sub.clone(), net.clone(), router.clone()],
                ),
                true,
            ),
            (res(Kind::Router, "rtr", &[]), true),
            (res(Kind::Subnet, "sub", &[net.clone()]), true),
            (res(Kind::Network, "net", &[]), true),
            (res(Kind::SecurityGroup, "sg", &[]), true),
        ]);
        assert_eq!(
            order(&plan),
            [
                "server vm",
                "floating_ip fip",
                "port port",
                "router_interface rtr:sub",
                "router rtr",
                "subnet sub",
                "network net",
                "security_group sg"
            ]
        );
    }

    #[test]
    fn a_selected_resource_used_by_an_unselected_one_is_held_with_its_user() {
        let sg = key(Kind::SecurityGroup, "sg");
        let plan = plan(vec![
            (res(Kind::Port, "untagged-port", &[sg.clone()]), false),
            (res(Kind::Port, "tagged-port", &[sg.clone()]), true),
            (res(Kind::SecurityGroup, "sg", &[]), true),
        ]);
        assert_eq!(
            disposition(&plan, &sg),
            Disposition::Held {
                reason: LeftReason::InUse {
                    by: key(Kind::Port, "untagged-port")
                }
            }
        );
        assert_eq!(order(&plan), ["port tagged-port"]);
    }

    #[test]
    fn holding_propagates_down_the_chain_naming_the_nearest_user() {
        let (net, sub) = (key(Kind::Network, "net"), key(Kind::Subnet, "sub"));
        let plan = plan(vec![
            (res(Kind::Port, "keep", &[sub.clone()]), false),
            (res(Kind::Subnet, "sub", &[net.clone()]), true),
            (res(Kind::Network, "net", &[]), true),
        ]);
        assert_eq!(
            disposition(&plan, &net),
            Disposition::Held {
                reason: LeftReason::InUse { by: sub }
            }
        );
        assert!(plan.order.is_empty());
    }

    #[test]
    fn an_unlisted_user_becomes_a_kept_stand_in_that_holds_what_it_uses() {
        let mut volume = res(Kind::Volume, "vol", &[]);
        volume.used_by = vec![key(Kind::Server, "someone-elses")];
        let plan = plan(vec![(volume, true)]);
        assert_eq!(
            disposition(&plan, &key(Kind::Volume, "vol")),
            Disposition::Held {
                reason: LeftReason::InUse {
                    by: key(Kind::Server, "someone-elses")
                }
            }
        );
        assert_eq!(
            disposition(&plan, &key(Kind::Server, "someone-elses")),
            Disposition::Keep
        );
    }

    #[test]
    fn a_cycle_holds_back_only_its_members() {
        let (a, b) = (key(Kind::Port, "a"), key(Kind::Port, "b"));
        let plan = plan(vec![
            (res(Kind::Port, "a", &[b.clone()]), true),
            (res(Kind::Port, "b", &[a.clone()]), true),
            (res(Kind::Network, "other", &[]), true),
        ]);
        let cycle = Disposition::Held {
            reason: LeftReason::Cycle {
                members: vec![a.clone(), b.clone()],
            },
        };
        assert_eq!(disposition(&plan, &a), cycle);
        assert_eq!(disposition(&plan, &b), cycle);
        assert_eq!(order(&plan), ["network other"]);
        let Disposition::Held { reason } = cycle else {
            unreachable!()
        };
        assert_eq!(reason.to_string(), "reference cycle: port a -> port b");
    }

    #[test]
    fn what_a_cycle_member_uses_is_held_as_in_use() {
        let (a, b, net) = (
            key(Kind::Port, "a"),
            key(Kind::Port, "b"),
            key(Kind::Network, "net"),
        );
        let plan = plan(vec![
            (res(Kind::Port, "a", &[b.clone(), net.clone()]), true),
            (res(Kind::Port, "b", &[a.clone()]), true),
            (res(Kind::Network, "net", &[]), true),
        ]);
        assert_eq!(
            disposition(&plan, &net),
            Disposition::Held {
                reason: LeftReason::InUse { by: a }
            }
        );
    }

    #[test]
    fn a_port_nova_created_goes_with_its_selected_server_and_is_awaited_not_deleted() {
        let (server, net) = (key(Kind::Server, "vm"), key(Kind::Network, "net"));
        let mut nova_port = res(Kind::Port, "nova-port", &[net.clone()]);
        nova_port.used_by = vec![server.clone()];
        nova_port.removal = Removal::WithOwner(server.clone());
        let plan = plan(vec![
            (res(Kind::Server, "vm", &[]), true),
            (nova_port, false),
            (res(Kind::Network, "net", &[]), true),
        ]);
        assert_eq!(
            disposition(&plan, &key(Kind::Port, "nova-port")),
            Disposition::AwaitRemoval { owner: server }
        );
        assert_eq!(order(&plan), ["server vm", "port nova-port", "network net"]);
    }

    #[test]
    fn a_port_of_an_unselected_server_stays_and_holds_its_network() {
        let (server, net) = (key(Kind::Server, "vm"), key(Kind::Network, "net"));
        let mut nova_port = res(Kind::Port, "nova-port", &[net.clone()]);
        nova_port.used_by = vec![server.clone()];
        nova_port.removal = Removal::WithOwner(server.clone());
        let plan = plan(vec![
            (res(Kind::Server, "vm", &[]), false),
            (nova_port, false),
            (res(Kind::Network, "net", &[]), true),
        ]);
        assert_eq!(
            disposition(&plan, &net),
            Disposition::Held {
                reason: LeftReason::InUse {
                    by: key(Kind::Port, "nova-port")
                }
            }
        );
    }
}
