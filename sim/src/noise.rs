//! Benign noise ([`crate::SimConfig::noise`]): where calls come from in real estates
//! (hosted CI runners, serverless egress, pods, office NAT, a travelling developer)
//! and a deployment day with new writes. Nothing here is an attack; the ground truth
//! expects no alert from it.

use lineage_core::inventory::{AgentKind, InventoryFile};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::actors::SimAgent;

/// Where an agent's calls come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Egress {
    /// Its one address (no noise).
    Fixed,
    /// A hosted CI runner: a fresh address (and /24) per job, from a cloud range.
    HostedRunner,
    /// A serverless function without a VPC: a different cloud address per call.
    Serverless,
    /// Pods of one service sharing its credential, over three subnets.
    Pods,
    /// A laptop behind an office NAT with two egress networks.
    OfficeNat,
}

/// The hotel network the travelling developer's agent works from for a day.
pub(crate) const HOTEL: &str = "192.0.2.44";

/// Writes services perform for the first time on deployment day (declared in scope).
pub(crate) const DEPLOY_ACTIONS: &[(&str, &str)] = &[
    ("lambda", "UpdateFunctionCode"),
    ("ecs", "UpdateService"),
    ("dynamodb", "UpdateTable"),
];

/// How agent `ai` reaches AWS under noise.
pub(crate) fn egress_of(agent: &SimAgent, ai: usize) -> Egress {
    match agent.template.kind {
        AgentKind::Ci => Egress::HostedRunner,
        // Services alternate between serverless and pods (services are every sixth agent).
        AgentKind::Service if (ai / 6).is_multiple_of(2) => Egress::Serverless,
        AgentKind::Service => Egress::Pods,
        _ => Egress::OfficeNat,
    }
}

/// The address of this hour's job (hosted runners), drawn once per agent hour.
pub(crate) fn job_address(rng: &mut ChaCha8Rng, egress: Egress) -> String {
    match egress {
        Egress::HostedRunner => format!(
            "20.{}.{}.{}",
            rng.gen_range(1..250),
            rng.gen_range(0..256),
            rng.gen_range(1..255)
        ),
        _ => String::new(),
    }
}

/// The address of one call.
pub(crate) fn address(
    rng: &mut ChaCha8Rng,
    agent: &SimAgent,
    ai: usize,
    egress: Egress,
    job: &str,
) -> String {
    match egress {
        Egress::Fixed => agent.source_ip.clone(),
        Egress::HostedRunner => job.to_owned(),
        Egress::Serverless => format!(
            "3.{}.{}.{}",
            rng.gen_range(208..240),
            rng.gen_range(0..256),
            rng.gen_range(1..255)
        ),
        Egress::Pods => format!(
            "10.{}.{}.{}",
            100 + ai % 100,
            rng.gen_range(1..4),
            rng.gen_range(2..250)
        ),
        Egress::OfficeNat => {
            if rng.gen_bool(0.5) {
                agent.source_ip.clone()
            } else {
                // The same host number behind the office's second egress network.
                agent.source_ip.replacen("10.", "10.1", 1)
            }
        }
    }
}

/// The day the first AI agent's owner travels (after the learning day).
fn travel_day(days: u32) -> Option<u32> {
    (days >= 3).then_some(days / 2)
}

fn is_traveller(agents: &[SimAgent], ai: usize) -> bool {
    agents
        .iter()
        .position(|a| a.template.kind == AgentKind::AiAgent)
        == Some(ai)
}

/// Whether agent `ai` works from the hotel on `day`.
pub(crate) fn travelling(agents: &[SimAgent], ai: usize, day: u32, days: u32) -> bool {
    is_traveller(agents, ai) && travel_day(days) == Some(day)
}

/// Whether agent `ai` is silent this hour: the flights out and back (the first six
/// hours of the travel day and of the day after).
pub(crate) fn in_flight(agents: &[SimAgent], ai: usize, day: u32, hour: u32, days: u32) -> bool {
    is_traveller(agents, ai)
        && travel_day(days).is_some_and(|d| day == d || day == d + 1)
        && hour < 6
}

/// Whether `agent` deploys this hour (services, mid-afternoon of the middle day).
pub(crate) fn deploys(agent: &SimAgent, day: u32, hour: u32, days: u32) -> bool {
    agent.template.kind == AgentKind::Service && travel_day(days) == Some(day) && hour == 15
}

/// Declares the deployment writes in every service's scope: they are allowed, only new.
pub(crate) fn declare_deploy_actions(inventory: &mut InventoryFile, agents: &[SimAgent]) {
    for a in agents
        .iter()
        .filter(|a| a.template.kind == AgentKind::Service)
    {
        if let Some(inv) = inventory.agents.iter_mut().find(|x| x.id.as_str() == a.id) {
            for scope in &mut inv.scopes {
                scope
                    .actions
                    .extend(DEPLOY_ACTIONS.iter().map(|(s, o)| format!("{s}:{o}")));
            }
        }
    }
}
