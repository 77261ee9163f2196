//! The simulation loop and the files it writes.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, TimeZone, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::actors::{self, CredentialStyle, SimAgent, SimHuman, Target, EXCURSIONS};
use crate::cloudtrail::{self, render, sts_response, Who};
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
}

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
}

impl Sim<'_> {
    fn emit(
        &mut self,
        call: cloudtrail::Call<'_>,
        expected: Option<ExpectedAttribution>,
    ) -> String {
        let time = call.time;
        let (id, json) = render(&mut self.rng, call, &self.cfg.account, &self.cfg.region);
        match expected {
            Some(e) if self.cfg.record_attributions => {
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

    let inventory_path = out.join("inventory.toml");
    let text = toml::to_string(&actors::inventory(&humans, &agents))
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
                let count = if excursion.is_some() { n.max(4) } else { n };
                let mut times: Vec<DateTime<Utc>> = (0..count)
                    .map(|_| hour_start + Duration::seconds(sim.rng.gen_range(2..3600)))
                    .collect();
                times.sort();
                let session =
                    open_session(&mut sim, agent, &humans, times[0] - Duration::seconds(1));
                for t in &times {
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
                            source_ip: &agent.source_ip,
                            error,
                        },
                        expected_agent(agent, &humans),
                    );
                }
                if let Some(kind) = excursion {
                    let last = *times.last().expect("at least four calls");
                    excursion_calls(&mut sim, agent, &humans, &session, kind, last);
                }
            }
            for (hi, human) in humans.iter().enumerate() {
                if !(9..18).contains(&hour) {
                    continue;
                }
                let n = (cfg.calls_per_agent_day / 30).max(1);
                for k in 0..n {
                    let t = hour_start + Duration::seconds(sim.rng.gen_range(2..3600));
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
        }
    }
    let truth_path = out.join("ground_truth.json");
    let file = File::create(&truth_path).map_err(|e| io(&truth_path, e))?;
    let mut w = BufWriter::new(file);
    serde_json::to_writer(&mut w, &sim.truth).map_err(|e| SimError::Config(e.to_string()))?;
    w.flush().map_err(|e| io(&truth_path, e))?;
    Ok(SimReport {
        events: sim.events,
        files,
        json_bytes,
        inventory: inventory_path,
        ground_truth: truth_path,
        logs: logs_root,
        expected_alerts: sim.truth.alerts.len(),
    })
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
            source_ip: &agent.source_ip,
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
    sim.truth.alerts.push(ExpectedAlert {
        detector: "out-of-scope".into(),
        agent: agent.id.clone(),
        owner: humans[agent.owner].id.clone(),
        action: format!("{service}:{operation}"),
        scenario: scenario.into(),
        event_ids: ids,
    });
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
