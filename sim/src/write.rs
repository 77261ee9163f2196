//! The simulation loop and the files it writes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use lineage_core::inventory::AgentKind;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::actors::{self, CredentialStyle, SimAgent, SimHuman, Target, EXCURSIONS};
use crate::cloudtrail::{self, render, sts_response, Who};
use crate::noise;
use crate::sources::{self, Emitted, HourBuffers, Identities, VaultToken};
use crate::truth::{ExpectedAlert, ExpectedAttribution, GroundTruth};
use crate::SimError;

/// Records per delivery file at most (CloudTrail also cuts files by size).
const MAX_RECORDS_PER_FILE: usize = 1000;

/// What to simulate.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed: the same seed writes the same bytes.
    pub seed: u64,
    /// Humans.
    pub humans: usize,
    /// Agents.
    pub agents: usize,
    /// Days of activity.
    pub days: u32,
    /// Average calls per agent per day.
    pub calls_per_agent_day: u32,
    /// First day (UTC midnight).
    pub start: DateTime<Utc>,
    /// AWS account id.
    pub account: String,
    /// AWS region.
    pub region: String,
    /// Record the expected attribution of every event (turn off for very large runs).
    pub record_attributions: bool,
    /// Also write Entra ID, GitHub and Vault/OpenBao logs of the same estate.
    pub all_sources: bool,
    /// Seed the detector scenarios (a CI runner's cached long-lived key, a stolen MCP
    /// server key used from a new network at the same time as the real one, a dormant
    /// key reactivated); the departed owner comes with `all_sources`.
    pub scenarios: bool,
    /// Replace `AWSLogs/`, `Entra/`, `GitHub/` and `Vault/` under the output directory
    /// even when a previous `lineage simulate` did not write them (its marker file
    /// `.lineage-simulate` is missing): they could be a real log mirror.
    pub force: bool,
    /// Add benign noise that real estates have and a naive detector alerts on: CI
    /// runners on a fresh hosted-runner address per job, serverless egress from a
    /// different address per call, a service's pods spread over three subnets, AI
    /// agents and MCP servers behind a two-network office NAT, one developer's agent
    /// travelling for a day, and a deployment day on which services perform writes
    /// they never did before (declared in their scope). None of it is an attack: the
    /// ground truth expects no alert from it.
    pub noise: bool,
}

/// The file that says an output directory's log folders were written by the simulator.
pub const MARKER: &str = ".lineage-simulate";

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            seed: 7,
            humans: 8,
            agents: 12,
            days: 3,
            calls_per_agent_day: 200,
            start: Utc.with_ymd_and_hms(2026, 10, 5, 0, 0, 0).unwrap(),
            account: "111122223333".into(),
            region: "us-east-1".into(),
            record_attributions: true,
            all_sources: true,
            scenarios: true,
            force: false,
            noise: false,
        }
    }
}

/// What was written.
#[derive(Clone, Debug)]
pub struct SimReport {
    /// Records written.
    pub events: u64,
    /// Delivery files written.
    pub files: u64,
    /// Uncompressed JSON bytes written.
    pub json_bytes: u64,
    /// `inventory.toml`.
    pub inventory: PathBuf,
    /// `ground_truth.json`.
    pub ground_truth: PathBuf,
    /// The `AWSLogs` directory.
    pub logs: PathBuf,
    /// Every log directory written (`AWSLogs`, and `Entra`, `GitHub`, `Vault` when all sources are on).
    pub log_dirs: Vec<PathBuf>,
    /// Records written per source.
    pub events_by_source: std::collections::BTreeMap<String, u64>,
    /// Expected alerts.
    pub expected_alerts: usize,
}

struct Record {
    time: DateTime<Utc>,
    json: Value,
}

struct Sim<'c> {
    cfg: &'c SimConfig,
    rng: ChaCha8Rng,
    truth: GroundTruth,
    hour: Vec<Record>,
    events: u64,
    /// Event ids by agent and by AWS key (only while recording the truth), to derive
    /// the alerts the estate must raise.
    witness: Witness,
    /// Where sessions are opened from, when not the agent's own address (noise).
    session_ip: Option<String>,
}

/// What the simulator remembers to derive expected alerts.
#[derive(Default)]
struct Witness {
    by_agent: std::collections::HashMap<String, Vec<(DateTime<Utc>, String)>>,
    by_key: std::collections::HashMap<String, Vec<String>>,
}

impl Witness {
    fn saw(&mut self, time: DateTime<Utc>, id: &str, agent: Option<&str>, key: Option<&str>) {
        if let Some(a) = agent {
            self.by_agent
                .entry(a.to_owned())
                .or_default()
                .push((time, id.to_owned()));
        }
        if let Some(k) = key {
            let ids = self.by_key.entry(k.to_owned()).or_default();
            if ids.len() < 200 {
                ids.push(id.to_owned());
            }
        }
    }
}

impl Sim<'_> {
    fn emit(
        &mut self,
        call: cloudtrail::Call<'_>,
        expected: Option<ExpectedAttribution>,
    ) -> String {
        let time = call.time;
        let key = match &call.who {
            Who::IamUser { key, .. } => Some(key.to_string()),
            _ => None,
        };
        let (id, json) = render(&mut self.rng, call, &self.cfg.account, &self.cfg.region);
        match expected {
            Some(e) if self.cfg.record_attributions => {
                self.witness
                    .saw(time, &id, e.agent.as_deref(), key.as_deref());
                self.truth.attributions.insert(id.clone(), e);
            }
            Some(_) => {}
            None => self.truth.service_events += 1,
        }
        self.hour.push(Record { time, json });
        self.events += 1;
        id
    }
}

fn expected_agent(agent: &SimAgent, humans: &[SimHuman]) -> Option<ExpectedAttribution> {
    Some(ExpectedAttribution {
        agent: Some(agent.id.clone()),
        owner: Some(humans[agent.owner].id.clone()),
    })
}

fn request_for(target: Target, agent: &SimAgent, rng: &mut ChaCha8Rng) -> Value {
    match target {
        Target::None => Value::Null,
        Target::Bucket => {
            json!({ "bucketName": agent.bucket, "Host": format!("{}.s3.amazonaws.com", agent.bucket) })
        }
        Target::Object => json!({
            "bucketName": agent.bucket,
            "key": format!("work/{}.json", rng.gen_range(0..500)),
            "Host": format!("{}.s3.amazonaws.com", agent.bucket),
        }),
        Target::Parameter => {
            json!({ "name": format!("/{}/config/{}", agent.id, rng.gen_range(0..20)), "withDecryption": true })
        }
    }
}

/// The credential an agent works with in the current hour.
struct Session {
    who_key: String,
    role: Option<(String, String, DateTime<Utc>)>,
}

/// Writes the simulated enterprise to `out`.
pub fn simulate(cfg: &SimConfig, out: &Path) -> Result<SimReport, SimError> {
    if cfg.humans == 0 || cfg.days == 0 {
        return Err(SimError::Config(
            "need at least one human and one day".into(),
        ));
    }
    let io = |p: &Path, e| SimError::Io(p.display().to_string(), e);
    std::fs::create_dir_all(out).map_err(|e| io(out, e))?;
    let mut sim = Sim {
        cfg,
        rng: ChaCha8Rng::seed_from_u64(cfg.seed),
        truth: GroundTruth {
            seed: cfg.seed,
            ..GroundTruth::default()
        },
        hour: Vec::new(),
        events: 0,
        witness: Witness::default(),
        session_ip: None,
    };
    let humans = actors::build_humans(&mut sim.rng, cfg.humans);
    let agents = actors::build_agents(&mut sim.rng, cfg.agents, cfg.humans, &cfg.account);

    // One excursion for every other AI agent / MCP server, at a fixed day and hour.
    let excursions: Vec<(usize, u32, u32, usize)> = agents
        .iter()
        .enumerate()
        .filter(|(_, a)| a.template.kind.is_ai())
        .enumerate()
        .filter(|(n, _)| n % 2 == 0)
        .map(|(n, (i, _))| {
            (
                i,
                n as u32 % cfg.days,
                10 + (n as u32 % 6),
                (n / 2) % (EXCURSIONS.len() + 1),
            )
        })
        .collect();

    let mut other = OtherSources {
        rng: ChaCha8Rng::seed_from_u64(cfg.seed ^ 0x9e37_79b9_7f4a_7c15),
        ids: None,
        buf: HourBuffers::default(),
        human_vault: vec![None; humans.len()],
        agent_vault: vec![None; agents.len()],
        counts: Default::default(),
    };
    let mut inventory = actors::inventory(&humans, &agents);
    if cfg.all_sources {
        let ids = Identities::build(&mut other.rng, &humans, &agents, cfg.start, cfg.days);
        ids.extend_inventory(&mut inventory, &agents);
        other.ids = Some(ids);
    }
    // The simulator owns these folders: a previous run's files must not mix with this
    // one's. It replaces them only where its own marker says it wrote them, so an
    // `--out` pointed at a real log mirror by mistake deletes nothing.
    let marker = out.join(MARKER);
    for owned in ["AWSLogs", "Entra", "GitHub", "Vault"] {
        let dir = out.join(owned);
        if dir.exists() {
            if !marker.exists() && !cfg.force {
                return Err(SimError::Config(format!(
                    "refusing to replace {}: `lineage simulate` did not write it (no {} beside it); \
                     point --out at a new directory, or pass --force to delete it",
                    dir.display(),
                    marker.display()
                )));
            }
            std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
        }
    }
    std::fs::write(
        &marker,
        "written by `lineage simulate`: the log folders here are simulated and may be replaced\n",
    )
    .map_err(|e| io(&marker, e))?;
    let departed = other.ids.as_ref().and_then(|i| i.departed);
    if cfg.scenarios {
        for a in agents.iter().filter(|a| a.template.kind == AgentKind::Ci) {
            if let Some(inv) = inventory.agents.iter_mut().find(|x| x.id.as_str() == a.id) {
                inv.aws_iam_users.push(format!("ci-cache-{}", a.id));
            }
        }
        if let Some(a) = agents
            .iter()
            .find(|a| a.template.kind == AgentKind::Service)
        {
            if let Some(inv) = inventory.agents.iter_mut().find(|x| x.id.as_str() == a.id) {
                inv.credentials
                    .push(lineage_core::CredentialId::new(dormant_key(a)));
            }
        }
    }
    if cfg.noise {
        noise::declare_deploy_actions(&mut inventory, &agents);
    }
    let inventory_path = out.join("inventory.toml");
    let text = toml::to_string(&inventory)
        .map_err(|e| SimError::Config(format!("inventory does not serialize: {e}")))?;
    std::fs::write(
        &inventory_path,
        format!("# Simulated inventory (seed {}).\n{text}", cfg.seed),
    )
    .map_err(|e| io(&inventory_path, e))?;

    let logs_root = out.join("AWSLogs");
    let mut files = 0u64;
    let mut json_bytes = 0u64;
    let per_hour = cfg.calls_per_agent_day as f64 / 24.0;
    let sso_role = format!(
        "arn:aws:iam::{}:role/aws-reserved/sso.amazonaws.com/AWSReservedSSO_Developer_5f2c1a9e",
        cfg.account
    );
    let mut sso_sessions: Vec<Option<(String, DateTime<Utc>)>> = vec![None; humans.len()];

    for day in 0..cfg.days {
        let day_start = cfg.start + Duration::days(day as i64);
        sso_sessions.iter_mut().for_each(|s| *s = None);
        for hour in 0..24u32 {
            let hour_start = day_start + Duration::hours(hour as i64);
            for (ai, agent) in agents.iter().enumerate() {
                let whole = per_hour.floor() as u32;
                let n = whole + u32::from(sim.rng.gen_bool(per_hour - whole as f64));
                let excursion = excursions
                    .iter()
                    .find(|(i, d, h, _)| *i == ai && *d == day && *h == hour)
                    .map(|e| e.3);
                if n == 0 && excursion.is_none() {
                    continue;
                }
                if cfg.noise && noise::in_flight(&agents, ai, day, hour, cfg.days) {
                    continue;
                }
                let count = if excursion.is_some() { n.max(4) } else { n };
                let mut times: Vec<DateTime<Utc>> = (0..count)
                    .map(|_| hour_start + Duration::seconds(sim.rng.gen_range(2..3600)))
                    .collect();
                times.sort();
                let travel = cfg.noise && noise::travelling(&agents, ai, day, cfg.days);
                // The travelling agent opens its sessions from the hotel too.
                sim.session_ip = travel.then(|| noise::HOTEL.to_owned());
                let session =
                    open_session(&mut sim, agent, &humans, times[0] - Duration::seconds(1));
                let egress = if cfg.noise {
                    noise::egress_of(agent, ai)
                } else {
                    noise::Egress::Fixed
                };
                let job_ip = noise::job_address(&mut sim.rng, egress);
                for t in &times {
                    let ip = if travel {
                        noise::HOTEL.to_owned()
                    } else {
                        noise::address(&mut sim.rng, agent, ai, egress, &job_ip)
                    };
                    let call =
                        agent.template.calls[sim.rng.gen_range(0..agent.template.calls.len())];
                    let request = request_for(call.target, agent, &mut sim.rng);
                    let error = if sim.rng.gen_bool(0.01) {
                        Some(("ThrottlingException", "Rate exceeded"))
                    } else {
                        None
                    };
                    let who = who_for(agent, &session);
                    sim.emit(
                        cloudtrail::Call {
                            time: *t,
                            who,
                            service: call.service,
                            operation: call.operation,
                            read_only: call.read_only,
                            request,
                            response: Value::Null,
                            resources: Value::Null,
                            user_agent: agent.template.user_agent,
                            source_ip: &ip,
                            error,
                        },
                        expected_agent(agent, &humans),
                    );
                }
                if cfg.noise && noise::deploys(agent, day, hour, cfg.days) {
                    for (k, (service, operation)) in noise::DEPLOY_ACTIONS.iter().enumerate() {
                        let t = hour_start + Duration::minutes(50 + k as i64);
                        let ip = noise::address(&mut sim.rng, agent, ai, egress, &job_ip);
                        sim.emit(
                            cloudtrail::Call {
                                read_only: false,
                                ..plain(
                                    t,
                                    who_for(agent, &session),
                                    service,
                                    operation,
                                    agent.template.user_agent,
                                    &ip,
                                )
                            },
                            expected_agent(agent, &humans),
                        );
                    }
                }
                if let Some(kind) = excursion {
                    let last = *times.last().expect("at least four calls");
                    excursion_calls(&mut sim, agent, &humans, &session, kind, last);
                }
                if cfg.scenarios {
                    seeded_scenarios(
                        &mut sim, agent, ai, &agents, &humans, &session, day, hour, hour_start,
                    );
                }
            }
            for (hi, human) in humans.iter().enumerate() {
                if !(9..18).contains(&hour) {
                    continue;
                }
                let n = (cfg.calls_per_agent_day / 30).max(1);
                for k in 0..n {
                    let t = hour_start + Duration::seconds(sim.rng.gen_range(2..3600));
                    if departed.is_some_and(|(h, when)| h == hi && t >= when) {
                        continue;
                    }
                    let (service, op) = [
                        ("s3", "ListBuckets"),
                        ("ec2", "DescribeInstances"),
                        ("cloudtrail", "LookupEvents"),
                        ("iam", "ListRoles"),
                    ][sim.rng.gen_range(0..4)];
                    let expected = Some(ExpectedAttribution {
                        agent: None,
                        owner: Some(human.id.clone()),
                    });
                    if k % 2 == 0 {
                        sim.emit(
                            plain_call(
                                t,
                                Who::IamUser {
                                    user: &human.id,
                                    principal_id: &human.principal_id,
                                    key: &human.key,
                                },
                                service,
                                op,
                                "10.1.0.5",
                            ),
                            expected,
                        );
                        continue;
                    }
                    let (key, created) = match &sso_sessions[hi] {
                        Some(s) => s.clone(),
                        None => {
                            let key = actors::key_id(&mut sim.rng, "ASIA");
                            let created = t - Duration::seconds(1);
                            let response =
                                sts_response(&mut sim.rng, &key, &sso_role, &human.email, created);
                            sim.emit(
                                cloudtrail::Call {
                                    time: created,
                                    who: Who::SamlUser { email: &human.email },
                                    service: "sts",
                                    operation: "AssumeRoleWithSAML",
                                    read_only: true,
                                    request: json!({
                                        "roleArn": sso_role,
                                        "principalArn": format!("arn:aws:iam::{}:saml-provider/Okta", cfg.account),
                                        "roleSessionName": human.email,
                                        "durationSeconds": 28800,
                                    }),
                                    response,
                                    resources: Value::Null,
                                    user_agent: "aws-internal/3 aws-sdk-java/1.12.720",
                                    source_ip: "10.1.0.5",
                                    error: None,
                                },
                                expected.clone(),
                            );
                            sso_sessions[hi] = Some((key.clone(), created));
                            (key, created)
                        }
                    };
                    sim.emit(
                        plain_call(
                            t,
                            Who::Role {
                                role_arn: &sso_role,
                                session_name: &human.email,
                                key: &key,
                                created,
                            },
                            service,
                            op,
                            "10.1.0.5",
                        ),
                        expected,
                    );
                }
            }
            // The provider's own housekeeping: no credential, nobody to attribute.
            for _ in 0..2 {
                let t = hour_start + Duration::seconds(sim.rng.gen_range(0..3600));
                sim.emit(
                    cloudtrail::Call {
                        time: t,
                        who: Who::Service {
                            service: "kms.amazonaws.com",
                        },
                        service: "kms",
                        operation: "RotateKey",
                        read_only: false,
                        request: Value::Null,
                        response: Value::Null,
                        resources: Value::Null,
                        user_agent: "kms.amazonaws.com",
                        source_ip: "kms.amazonaws.com",
                        error: None,
                    },
                    None,
                );
            }
            let (f, b) = flush_hour(&mut sim, &logs_root, hour_start)?;
            files += f;
            json_bytes += b;
            if other.ids.is_some() {
                other_sources_hour(
                    &mut sim, &mut other, &humans, &agents, day, hour, hour_start,
                );
                let (f, b) = sources::flush(&mut other.buf, out, hour_start)?;
                files += f;
                json_bytes += b;
            }
        }
    }
    if cfg.record_attributions {
        derive_expected_alerts(&mut sim, &humans, &agents, departed);
    }
    let truth_path = out.join("ground_truth.json");
    let file = File::create(&truth_path).map_err(|e| io(&truth_path, e))?;
    let mut w = BufWriter::new(file);
    serde_json::to_writer(&mut w, &sim.truth).map_err(|e| SimError::Config(e.to_string()))?;
    w.flush().map_err(|e| io(&truth_path, e))?;
    let mut log_dirs = vec![logs_root.clone()];
    for d in ["Entra", "GitHub", "Vault"] {
        if out.join(d).exists() {
            log_dirs.push(out.join(d));
        }
    }
    let mut events_by_source = other.counts;
    let others: u64 = events_by_source.values().sum();
    events_by_source.insert("cloudtrail".into(), sim.events - others);
    Ok(SimReport {
        log_dirs,
        events_by_source,
        events: sim.events,
        files,
        json_bytes,
        inventory: inventory_path,
        ground_truth: truth_path,
        logs: logs_root,
        expected_alerts: sim.truth.alerts.len(),
    })
}

/// State of the Entra / GitHub / Vault side of the simulation.
struct OtherSources {
    rng: ChaCha8Rng,
    ids: Option<Identities>,
    buf: HourBuffers,
    human_vault: Vec<Option<VaultToken>>,
    agent_vault: Vec<Option<VaultToken>>,
    counts: std::collections::BTreeMap<String, u64>,
}

impl Sim<'_> {
    fn expect(
        &mut self,
        source: &str,
        counts: &mut std::collections::BTreeMap<String, u64>,
        e: Emitted,
    ) {
        self.events += 1;
        *counts.entry(source.to_owned()).or_default() += 1;
        if self.cfg.record_attributions {
            self.witness
                .saw(e.time, &e.id, e.expected.agent.as_deref(), None);
            self.truth.attributions.insert(e.id, e.expected);
        }
    }
}

/// One hour of Entra, GitHub and Vault activity by the same humans and agents.
fn other_sources_hour(
    sim: &mut Sim<'_>,
    o: &mut OtherSources,
    humans: &[SimHuman],
    agents: &[SimAgent],
    day: u32,
    hour: u32,
    hour_start: DateTime<Utc>,
) {
    let ids = o.ids.take().expect("identities");
    let rng = &mut o.rng;
    let at = |rng: &mut ChaCha8Rng| hour_start + Duration::seconds(rng.gen_range(60..3540));
    let departed =
        |hi: usize, t: DateTime<Utc>| ids.departed.is_some_and(|(h, when)| h == hi && t >= when);
    let admin = &humans[0];
    let admin_upn = ids.upn[0].clone();
    let mut emitted: Vec<(&str, Emitted)> = Vec::new();
    // Morning: humans sign in to Vault; each AI agent gets a child token of its owner's.
    if hour == 8 {
        for (hi, h) in humans.iter().enumerate() {
            let t = hour_start + Duration::minutes(hi as i64);
            if departed(hi, t) {
                o.human_vault[hi] = None;
                continue;
            }
            let (tok, e) = sources::vault_login(rng, &mut o.buf, t, h);
            o.human_vault[hi] = Some(tok);
            emitted.push(("vault", e));
        }
        for (ai, a) in agents.iter().enumerate() {
            if !a.template.kind.is_ai() {
                continue;
            }
            let Some(parent) = o.human_vault[a.owner].clone() else {
                continue;
            };
            let t = hour_start + Duration::minutes(30 + ai as i64);
            let (tok, e) =
                sources::vault_child_token(rng, &mut o.buf, t, &parent, a, &humans[a.owner]);
            o.agent_vault[ai] = Some(tok);
            emitted.push(("vault", e));
        }
    }
    if day == 0 && hour == 10 {
        for (ai, a) in agents.iter().enumerate() {
            let Some((app_id, sp_id, key_id)) = &ids.app[ai] else {
                continue;
            };
            let target = json!({
                "id": sp_id,
                "displayName": a.id,
                "type": "ServicePrincipal",
                "modifiedProperties": [
                    { "displayName": "KeyDescription", "oldValue": "[]",
                      "newValue": format!("[\"[KeyIdentifier={key_id},KeyType=Password,KeyUsage=Verify,DisplayName={}-secret]\"]", a.id) },
                    { "displayName": "Included Updated Properties", "oldValue": null, "newValue": "\"KeyDescription\"" },
                    { "displayName": "TargetId.ServicePrincipalNames", "oldValue": null, "newValue": format!("\"{app_id}\"") },
                ],
            });
            let t = at(rng);
            let e = sources::entra_audit(
                rng,
                &mut o.buf,
                t,
                "Add service principal credentials",
                &admin_upn,
                target,
                admin,
            );
            if sim.cfg.record_attributions {
                sim.truth.alerts.push(ExpectedAlert {
                    detector: "privilege-change".into(),
                    agent: None,
                    owner: admin.id.clone(),
                    action: "entra-directory:Add service principal credentials".into(),
                    scenario: format!("client secret added to {}'s service principal", a.id),
                    event_ids: vec![e.id.clone()],
                });
            }
            emitted.push(("entra", e));
        }
    }
    if let Some((hi, when)) = ids.departed {
        if when >= hour_start && when < hour_start + Duration::hours(1) {
            let target = json!({
                "id": ids.human_object_id[hi],
                "displayName": humans[hi].id,
                "type": "User",
                "userPrincipalName": ids.upn[hi],
                "modifiedProperties": [
                    { "displayName": "AccountEnabled", "oldValue": "[true]", "newValue": "[false]" },
                    { "displayName": "Included Updated Properties", "oldValue": null, "newValue": "\"AccountEnabled\"" },
                ],
            });
            emitted.push((
                "entra",
                sources::entra_audit(
                    rng,
                    &mut o.buf,
                    when,
                    "Disable account",
                    &admin_upn,
                    target,
                    admin,
                ),
            ));
        }
    }
    let per_hour = (sim.cfg.calls_per_agent_day as f64 / 24.0 / 3.0).max(0.5);
    for (ai, a) in agents.iter().enumerate() {
        let owner = &humans[a.owner];
        let whole = per_hour.floor() as u32;
        let n = whole + u32::from(rng.gen_bool(per_hour - whole as f64));
        for _ in 0..n {
            let t = at(rng);
            if let Some(e) = sources::github_token_use(rng, &mut o.buf, t, &ids, a, ai, owner) {
                emitted.push(("github", e));
            }
            if let (Some(tok), true) = (o.agent_vault[ai].as_ref(), hour >= 9) {
                let path = format!("secret/data/{}/config", a.id);
                let expected = ExpectedAttribution {
                    agent: Some(a.id.clone()),
                    owner: Some(owner.id.clone()),
                };
                let t = at(rng);
                emitted.push((
                    "vault",
                    sources::vault_read(rng, &mut o.buf, t, tok, path, &a.source_ip, expected),
                ));
            }
        }
        if n > 0 {
            let t = at(rng);
            if let Some(e) = sources::entra_sp_signin(rng, &mut o.buf, t, &ids, a, ai, owner) {
                emitted.push(("entra", e));
            }
        }
    }
    for (hi, h) in humans.iter().enumerate() {
        let t = at(rng);
        if !(9..18).contains(&hour) || departed(hi, t) {
            continue;
        }
        if hour == 9 {
            emitted.push((
                "entra",
                sources::entra_user_signin(rng, &mut o.buf, t, &ids, hi, h),
            ));
        }
        if rng.gen_bool(0.5) {
            emitted.push((
                "github",
                sources::github_web_use(rng, &mut o.buf, t, &ids, hi, h),
            ));
        }
        if let Some(tok) = o.human_vault[hi].clone() {
            let expected = ExpectedAttribution {
                agent: None,
                owner: Some(h.id.clone()),
            };
            let t = at(rng);
            emitted.push((
                "vault",
                sources::vault_read(
                    rng,
                    &mut o.buf,
                    t,
                    &tok,
                    "secret/data/team/shared".into(),
                    "10.1.0.5",
                    expected,
                ),
            ));
        }
    }
    for (source, e) in emitted {
        sim.expect(source, &mut o.counts, e);
    }
    o.ids = Some(ids);
}

fn plain_call<'a>(
    t: DateTime<Utc>,
    who: Who<'a>,
    service: &'a str,
    op: &'a str,
    ip: &'a str,
) -> cloudtrail::Call<'a> {
    cloudtrail::Call {
        time: t,
        who,
        service,
        operation: op,
        read_only: true,
        request: Value::Null,
        response: Value::Null,
        resources: Value::Null,
        user_agent: "aws-cli/2.17.12 md/awscrt#0.20.11 ua/2.0 os/macos#23.6.0 md/arch#arm64 lang/python#3.11.9 md/pyimpl#CPython md/installer#exe md/prompt#off",
        source_ip: ip,
        error: None,
    }
}

fn who_for<'a>(agent: &'a SimAgent, session: &'a Session) -> Who<'a> {
    match &session.role {
        Some((role, name, created)) => Who::Role {
            role_arn: role,
            session_name: name,
            key: &session.who_key,
            created: *created,
        },
        None => Who::IamUser {
            user: &agent.iam_user,
            principal_id: &agent.principal_id,
            key: &agent.key,
        },
    }
}

/// The credential the agent uses this hour, emitting the STS calls that create it.
fn open_session(
    sim: &mut Sim<'_>,
    agent: &SimAgent,
    humans: &[SimHuman],
    at: DateTime<Utc>,
) -> Session {
    let session_name = format!("{}-{}", agent.id, at.timestamp());
    match agent.style {
        CredentialStyle::DeclaredKey | CredentialStyle::IamUserBinding => Session {
            who_key: agent.key.clone(),
            role: None,
        },
        CredentialStyle::AssumesRole { chained } => {
            let caller = Who::IamUser {
                user: &agent.iam_user,
                principal_id: &agent.principal_id,
                key: &agent.key,
            };
            let first = sts_call(
                sim,
                agent,
                humans,
                caller,
                "AssumeRole",
                &agent.role,
                &session_name,
                at,
            );
            if !chained {
                return Session {
                    who_key: first,
                    role: Some((agent.role.clone(), session_name, at)),
                };
            }
            let chained_name = format!("{session_name}-deploy");
            let caller = Who::Role {
                role_arn: &agent.role,
                session_name: &session_name,
                key: &first,
                created: at,
            };
            let second = sts_call(
                sim,
                agent,
                humans,
                caller,
                "AssumeRole",
                &agent.chained_role,
                &chained_name,
                at,
            );
            Session {
                who_key: second,
                role: Some((agent.chained_role.clone(), chained_name, at)),
            }
        }
        CredentialStyle::WebIdentity => {
            let name = format!("GitHubActions-{}", at.timestamp());
            let subject = format!("repo:acme/{}:ref:refs/heads/main", agent.id);
            let caller = Who::WebIdentity { subject: &subject };
            let key = sts_call(
                sim,
                agent,
                humans,
                caller,
                "AssumeRoleWithWebIdentity",
                &agent.role,
                &name,
                at,
            );
            Session {
                who_key: key,
                role: Some((agent.role.clone(), name, at)),
            }
        }
    }
}

/// One STS call by `caller` that issues a session of `role`; returns the new key id.
#[allow(clippy::too_many_arguments)]
fn sts_call(
    sim: &mut Sim<'_>,
    agent: &SimAgent,
    humans: &[SimHuman],
    caller: Who<'_>,
    operation: &str,
    role: &str,
    session_name: &str,
    at: DateTime<Utc>,
) -> String {
    let key = actors::key_id(&mut sim.rng, "ASIA");
    let response = sts_response(&mut sim.rng, &key, role, session_name, at);
    let account = sim.cfg.account.clone();
    let ip = sim
        .session_ip
        .clone()
        .unwrap_or_else(|| agent.source_ip.clone());
    sim.emit(
        cloudtrail::Call {
            time: at,
            who: caller,
            service: "sts",
            operation,
            read_only: true,
            request: json!({ "roleArn": role, "roleSessionName": session_name, "durationSeconds": 3600 }),
            response,
            resources: json!([{ "accountId": account, "type": "AWS::IAM::Role", "ARN": role }]),
            user_agent: agent.template.user_agent,
            source_ip: &ip,
            error: None,
        },
        expected_agent(agent, humans),
    );
    key
}

/// Three calls outside the agent's scope, recorded as an expected alert.
fn excursion_calls(
    sim: &mut Sim<'_>,
    agent: &SimAgent,
    humans: &[SimHuman],
    session: &Session,
    kind: usize,
    after: DateTime<Utc>,
) {
    let (service, operation, scenario, request): (&str, &str, &str, Value) =
        match EXCURSIONS.get(kind) {
            Some(x) => {
                let request = match x.service {
                    "secretsmanager" => json!({ "secretId": "prod/payments/db-password" }),
                    "iam" => json!({ "userName": "break-glass-admin" }),
                    _ => json!({ "bucketName": "prod-customer-data" }),
                };
                (x.service, x.operation, x.scenario, request)
            }
            // An in-scope action on a resource outside the declared buckets.
            None => (
                "s3",
                "GetObject",
                "agent reads customer data from a bucket outside its declared resources",
                json!({ "bucketName": "prod-customer-data", "key": "exports/customers.csv" }),
            ),
        };
    let has_action = agent
        .template
        .calls
        .iter()
        .any(|c| c.service == service && c.operation == operation);
    let (service, operation, scenario, request) = if kind == EXCURSIONS.len() && !has_action {
        let x = &EXCURSIONS[0];
        (
            x.service,
            x.operation,
            x.scenario,
            json!({ "secretId": "prod/payments/db-password" }),
        )
    } else {
        (service, operation, scenario, request)
    };
    let mut ids = Vec::new();
    for k in 0..3 {
        let denied = operation == "CreateAccessKey";
        ids.push(sim.emit(
            cloudtrail::Call {
                time: after + Duration::seconds(5 + k * 7),
                who: who_for(agent, session),
                service,
                operation,
                read_only: operation.starts_with("Get"),
                request: request.clone(),
                response: Value::Null,
                resources: Value::Null,
                user_agent: agent.template.user_agent,
                source_ip: &agent.source_ip,
                error: denied.then_some((
                    "AccessDenied",
                    "User is not authorized to perform this operation",
                )),
            },
            expected_agent(agent, humans),
        ));
    }
    // After the anomaly detector's one-day learning period, an action the agent never
    // performs is also a new action for its root credential.
    let has_action = agent
        .template
        .calls
        .iter()
        .any(|c| c.service == service && c.operation == operation);
    if !has_action && after >= sim.cfg.start + Duration::days(1) + Duration::hours(2) {
        sim.truth.alerts.push(ExpectedAlert {
            detector: "anomaly".into(),
            agent: Some(agent.id.clone()),
            owner: humans[agent.owner].id.clone(),
            action: format!("{service}:{operation}"),
            scenario: format!("new action after learning: {scenario}"),
            event_ids: ids.clone(),
        });
    }
    sim.truth.alerts.push(ExpectedAlert {
        detector: "out-of-scope".into(),
        agent: Some(agent.id.clone()),
        owner: humans[agent.owner].id.clone(),
        action: format!("{service}:{operation}"),
        scenario: scenario.into(),
        event_ids: ids,
    });
}

/// The key of a service's backup job that is used once, goes quiet, and comes back.
fn dormant_key(agent: &SimAgent) -> String {
    let mut k: String = agent.key.chars().rev().collect();
    k.replace_range(..4, "AKIA");
    k
}

/// A read-only call with no parameters.
fn plain<'a>(
    time: DateTime<Utc>,
    who: Who<'a>,
    service: &'a str,
    operation: &'a str,
    user_agent: &'a str,
    source_ip: &'a str,
) -> cloudtrail::Call<'a> {
    cloudtrail::Call {
        time,
        who,
        service,
        operation,
        read_only: true,
        request: Value::Null,
        response: Value::Null,
        resources: Value::Null,
        user_agent,
        source_ip,
        error: None,
    }
}

/// The detector scenarios that happen inside an agent's hour.
#[allow(clippy::too_many_arguments)]
fn seeded_scenarios(
    sim: &mut Sim<'_>,
    agent: &SimAgent,
    ai: usize,
    agents: &[SimAgent],
    humans: &[SimHuman],
    session: &Session,
    day: u32,
    hour: u32,
    hour_start: DateTime<Utc>,
) {
    let last_day = sim.cfg.days - 1;
    let first_of = |kind: AgentKind| agents.iter().position(|a| a.template.kind == kind);
    let owner = humans[agent.owner].id.clone();
    // A CI runner job that used a long-lived key cached on the runner.
    if first_of(AgentKind::Ci) == Some(ai) && day == last_day.min(1) && hour == 14 {
        let user = format!("ci-cache-{}", agent.id);
        let key = format!("AKIACICACHE{:09}", ai);
        let principal_id = format!("AIDACICACHE{:09}", ai);
        let mut ids = Vec::new();
        for k in 0..3 {
            let who = Who::IamUser {
                user: &user,
                principal_id: &principal_id,
                key: &key,
            };
            let t = hour_start + Duration::minutes(40 + k);
            ids.push(sim.emit(
                plain(
                    t,
                    who,
                    "ecr",
                    "GetAuthorizationToken",
                    agent.template.user_agent,
                    &agent.source_ip,
                ),
                expected_agent(agent, humans),
            ));
        }
        sim.truth.alerts.push(ExpectedAlert {
            detector: "long-lived-credential".into(),
            agent: Some(agent.id.clone()),
            owner: owner.clone(),
            action: "ecr:GetAuthorizationToken".into(),
            scenario: "a CI runner's cached long-lived key".into(),
            event_ids: ids,
        });
    }
    // A typosquatted MCP server holding a stolen copy of the real one's session,
    // used from another network a minute after the real server.
    if first_of(AgentKind::McpServer) == Some(ai)
        && sim.cfg.days >= 2
        && day == last_day.min(2)
        && hour == 15
    {
        let t = hour_start + Duration::minutes(50);
        sim.emit(
            plain(
                t,
                who_for(agent, session),
                "ssm",
                "DescribeParameters",
                agent.template.user_agent,
                &agent.source_ip,
            ),
            expected_agent(agent, humans),
        );
        let stolen = sim.emit(
            plain(
                t + Duration::seconds(60),
                who_for(agent, session),
                "ssm",
                "DescribeParameters",
                "Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6.8.0 lang/python#3.12.5 mcp-server-awss/0.4.1",
                "203.0.113.77",
            ),
            expected_agent(agent, humans),
        );
        sim.truth.alerts.push(ExpectedAlert {
            detector: "anomaly".into(),
            agent: Some(agent.id.clone()),
            owner: owner.clone(),
            action: "ssm:DescribeParameters".into(),
            scenario: "a typosquatted MCP server's stolen key used from a new network at the same time as the real one".into(),
            event_ids: vec![stolen],
        });
    }
    // A service's backup key: used 45 days before the run, silent since, reactivated.
    if first_of(AgentKind::Service) == Some(ai) && day == 0 && (hour == 0 || hour == 20) {
        let key = dormant_key(agent);
        let t = if hour == 0 {
            sim.cfg.start - Duration::days(45)
        } else {
            hour_start + Duration::minutes(30)
        };
        let who = Who::IamUser {
            user: &agent.iam_user,
            principal_id: &agent.principal_id,
            key: &key,
        };
        let id = sim.emit(
            plain(
                t,
                who,
                "dynamodb",
                "GetItem",
                agent.template.user_agent,
                &agent.source_ip,
            ),
            expected_agent(agent, humans),
        );
        if hour == 20 {
            sim.truth.alerts.push(ExpectedAlert {
                detector: "anomaly".into(),
                agent: Some(agent.id.clone()),
                owner,
                action: "dynamodb:GetItem".into(),
                scenario: "a dormant key reactivated".into(),
                event_ids: vec![id],
            });
        }
    }
}

/// Alerts that follow from how the estate was simulated rather than from one seeded call.
fn derive_expected_alerts(
    sim: &mut Sim<'_>,
    humans: &[SimHuman],
    agents: &[SimAgent],
    departed: Option<(usize, DateTime<Utc>)>,
) {
    for a in agents {
        let owner = humans[a.owner].id.clone();
        // AI agents and MCP servers in this estate hold their own IAM user keys: the
        // inherited-long-lived-key problem the mission is about.
        if a.template.kind.is_ai() {
            if let Some(ids) = sim.witness.by_key.get(&a.key).filter(|ids| !ids.is_empty()) {
                sim.truth.alerts.push(ExpectedAlert {
                    detector: "long-lived-credential".into(),
                    agent: Some(a.id.clone()),
                    owner: owner.clone(),
                    action: "*".into(),
                    scenario: format!("{} holds a long-lived IAM user key", a.template.name),
                    event_ids: ids.clone(),
                });
            }
        }
        if let Some((h, when)) = departed.filter(|(h, _)| *h == a.owner) {
            let after: Vec<String> = sim
                .witness
                .by_agent
                .get(&a.id)
                .map(|v| {
                    v.iter()
                        .filter(|(t, _)| *t >= when)
                        .map(|(_, id)| id.clone())
                        .collect()
                })
                .unwrap_or_default();
            if !after.is_empty() {
                sim.truth.alerts.push(ExpectedAlert {
                    detector: "departed-owner".into(),
                    agent: Some(a.id.clone()),
                    owner: humans[h].id.clone(),
                    action: "*".into(),
                    scenario: "a departed owner's agent still using its credentials".into(),
                    event_ids: after,
                });
            }
        }
    }
}

/// Writes the hour's records as 5-minute delivery files; returns (files, JSON bytes).
fn flush_hour(
    sim: &mut Sim<'_>,
    root: &Path,
    hour_start: DateTime<Utc>,
) -> Result<(u64, u64), SimError> {
    let mut records = std::mem::take(&mut sim.hour);
    records.sort_by_key(|r| r.time);
    let dir = root
        .join(&sim.cfg.account)
        .join("CloudTrail")
        .join(&sim.cfg.region)
        .join(hour_start.format("%Y/%m/%d").to_string());
    std::fs::create_dir_all(&dir).map_err(|e| SimError::Io(dir.display().to_string(), e))?;
    let mut files = 0;
    let mut bytes = 0;
    let mut start = 0;
    while start < records.len() {
        let window = records[start].time.timestamp() / 300;
        let mut end = start;
        while end < records.len()
            && records[end].time.timestamp() / 300 == window
            && end - start < MAX_RECORDS_PER_FILE
        {
            end += 1;
        }
        let stamp = Utc
            .timestamp_opt(window * 300, 0)
            .single()
            .unwrap_or(hour_start);
        let suffix: String = (0..16)
            .map(|_| {
                const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
                A[sim.rng.gen_range(0..A.len())] as char
            })
            .collect();
        let name = format!(
            "{}_CloudTrail_{}_{}_{suffix}.json.gz",
            sim.cfg.account,
            sim.cfg.region,
            stamp.format("%Y%m%dT%H%MZ")
        );
        let path = dir.join(name);
        let slice: Vec<&Value> = records[start..end].iter().map(|r| &r.json).collect();
        let body = serde_json::to_vec(&json!({ "Records": slice }))
            .map_err(|e| SimError::Config(e.to_string()))?;
        bytes += body.len() as u64;
        let file = File::create(&path).map_err(|e| SimError::Io(path.display().to_string(), e))?;
        let mut gz = GzEncoder::new(BufWriter::new(file), Compression::fast());
        gz.write_all(&body)
            .and_then(|_| gz.finish().and_then(|mut w| w.flush()))
            .map_err(|e| SimError::Io(path.display().to_string(), e))?;
        files += 1;
        start = end;
    }
    Ok((files, bytes))
}
