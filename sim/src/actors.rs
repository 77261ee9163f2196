//! The simulated people and agents, and the inventory that declares them.

use lineage_core::inventory::{
    Agent, AgentKind, Aliases, Human, HumanStatus, InventoryFile, Scope,
};
use lineage_core::{AgentId, CredentialId, HumanId, Source};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const FIRST_NAMES: &[&str] = &[
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
    "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "ursula", "victor", "wendy",
];

/// One normal call an agent makes: service, operation, and a resource template.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call {
    pub(crate) service: &'static str,
    pub(crate) operation: &'static str,
    pub(crate) read_only: bool,
    /// `s3` bucket (+ key prefix) or SSM parameter prefix the call touches, if any.
    pub(crate) target: Target,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Target {
    None,
    /// S3 object under the agent's bucket.
    Object,
    /// S3 bucket listing of the agent's bucket.
    Bucket,
    /// SSM parameter under the agent's prefix.
    Parameter,
}

/// How an agent gets its AWS credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CredentialStyle {
    /// Its own IAM user key, declared by key id in the inventory.
    DeclaredKey,
    /// Its own IAM user key, bound through the IAM user name.
    IamUserBinding,
    /// Its key assumes a role each day and works through the session (sometimes chained).
    AssumesRole { chained: bool },
    /// GitHub Actions OIDC: AssumeRoleWithWebIdentity, role bound in the inventory.
    WebIdentity,
}

pub(crate) struct Template {
    pub(crate) name: &'static str,
    pub(crate) kind: AgentKind,
    pub(crate) user_agent: &'static str,
    pub(crate) calls: &'static [Call],
}

const fn call(
    service: &'static str,
    operation: &'static str,
    read_only: bool,
    target: Target,
) -> Call {
    Call {
        service,
        operation,
        read_only,
        target,
    }
}

pub(crate) const TEMPLATES: &[Template] = &[
    Template {
        name: "claude-code",
        kind: AgentKind::AiAgent,
        user_agent: "aws-cli/2.17.12 md/awscrt#0.20.11 ua/2.0 os/macos#23.6.0 md/arch#arm64 lang/python#3.11.9 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/prompt#off claude-code/1.0.43",
        calls: &[
            call("s3", "GetObject", true, Target::Object),
            call("s3", "PutObject", false, Target::Object),
            call("s3", "ListObjects", true, Target::Bucket),
            call("logs", "FilterLogEvents", true, Target::None),
            call("ec2", "DescribeInstances", true, Target::None),
            call("lambda", "GetFunction", true, Target::None),
        ],
    },
    Template {
        name: "cursor",
        kind: AgentKind::AiAgent,
        user_agent: "Boto3/1.34.144 md/Botocore#1.34.144 ua/2.0 os/linux#6.5.0 md/arch#x86_64 lang/python#3.12.4 md/pyimpl#CPython cfg/retry-mode#legacy Botocore/1.34.144 Cursor/0.42.3",
        calls: &[
            call("s3", "GetObject", true, Target::Object),
            call("s3", "ListObjects", true, Target::Bucket),
            call("dynamodb", "Query", true, Target::None),
            call("cloudwatch", "GetMetricData", true, Target::None),
        ],
    },
    Template {
        name: "copilot",
        kind: AgentKind::AiAgent,
        user_agent: "aws-sdk-js/3.637.0 ua/2.1 os/linux#5.15.0 lang/js md/nodejs#20.17.0 api/s3#3.637.0 GitHubCopilot/1.250.0",
        calls: &[
            call("s3", "GetObject", true, Target::Object),
            call("s3", "ListObjects", true, Target::Bucket),
            call("ecr", "DescribeImages", true, Target::None),
        ],
    },
    Template {
        name: "mcp-aws",
        kind: AgentKind::McpServer,
        user_agent: "Boto3/1.35.0 md/Botocore#1.35.0 ua/2.0 os/linux#6.8.0 md/arch#x86_64 lang/python#3.12.5 md/pyimpl#CPython mcp-server-aws/0.4.1",
        calls: &[
            call("ssm", "GetParameter", true, Target::Parameter),
            call("ssm", "DescribeParameters", true, Target::None),
            call("dynamodb", "GetItem", true, Target::None),
            call("s3", "ListObjects", true, Target::Bucket),
        ],
    },
    Template {
        name: "ci-runner",
        kind: AgentKind::Ci,
        user_agent: "aws-cli/2.15.0 md/awscrt#0.19.19 ua/2.0 os/linux#6.5.0-1025-azure md/arch#x86_64 lang/python#3.11.6 md/pyimpl#CPython cfg/retry-mode#standard md/installer#exe md/distrib#ubuntu.22 md/prompt#off md/command#ecr.get-login-password github-actions",
        calls: &[
            call("ecr", "GetAuthorizationToken", true, Target::None),
            call("ecr", "PutImage", false, Target::None),
            call("s3", "PutObject", false, Target::Object),
            call("sts", "GetCallerIdentity", true, Target::None),
        ],
    },
    Template {
        name: "billing-svc",
        kind: AgentKind::Service,
        user_agent: "aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux md/GOARCH#amd64 api/dynamodb#1.34.4",
        calls: &[
            call("dynamodb", "GetItem", true, Target::None),
            call("dynamodb", "PutItem", false, Target::None),
            call("sqs", "ReceiveMessage", true, Target::None),
            call("kms", "Decrypt", true, Target::None),
        ],
    },
];

/// An out-of-scope action a compromised agent reaches for.
pub(crate) struct Excursion {
    pub(crate) service: &'static str,
    pub(crate) operation: &'static str,
    pub(crate) scenario: &'static str,
}

pub(crate) const EXCURSIONS: &[Excursion] = &[
    Excursion {
        service: "secretsmanager",
        operation: "GetSecretValue",
        scenario: "prompt-injected agent reads a production secret outside its scope",
    },
    Excursion {
        service: "iam",
        operation: "CreateAccessKey",
        scenario: "prompt-injected agent tries to mint a new access key for persistence",
    },
    Excursion {
        service: "s3",
        operation: "GetBucketPolicy",
        scenario: "agent enumerates bucket policies outside its declared scope",
    },
];

pub(crate) struct SimHuman {
    pub(crate) id: String,
    pub(crate) email: String,
    pub(crate) key: String,
    pub(crate) principal_id: String,
}

pub(crate) struct SimAgent {
    pub(crate) id: String,
    pub(crate) template: &'static Template,
    pub(crate) owner: usize,
    pub(crate) style: CredentialStyle,
    pub(crate) iam_user: String,
    pub(crate) key: String,
    pub(crate) principal_id: String,
    pub(crate) bucket: String,
    pub(crate) role: String,
    pub(crate) chained_role: String,
    pub(crate) source_ip: String,
}

pub(crate) fn key_id(rng: &mut ChaCha8Rng, prefix: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut s = String::with_capacity(20);
    s.push_str(prefix);
    for _ in 0..16 {
        s.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    s
}

pub(crate) fn build_humans(rng: &mut ChaCha8Rng, n: usize) -> Vec<SimHuman> {
    (0..n)
        .map(|i| {
            let base = FIRST_NAMES[i % FIRST_NAMES.len()];
            let id = if i < FIRST_NAMES.len() {
                base.to_owned()
            } else {
                format!("{base}{}", i / FIRST_NAMES.len())
            };
            SimHuman {
                email: format!("{id}@example.com"),
                key: key_id(rng, "AKIA"),
                principal_id: key_id(rng, "AIDA"),
                id,
            }
        })
        .collect()
}

pub(crate) fn build_agents(
    rng: &mut ChaCha8Rng,
    n: usize,
    humans: usize,
    account: &str,
) -> Vec<SimAgent> {
    (0..n)
        .map(|i| {
            let template = &TEMPLATES[i % TEMPLATES.len()];
            let id = format!("{}-{}", template.name, i / TEMPLATES.len() + 1);
            let style = match template.kind {
                AgentKind::Ci => CredentialStyle::WebIdentity,
                AgentKind::Service => CredentialStyle::IamUserBinding,
                _ => match i % 4 {
                    0 => CredentialStyle::AssumesRole { chained: false },
                    1 => CredentialStyle::DeclaredKey,
                    2 => CredentialStyle::AssumesRole { chained: true },
                    _ => CredentialStyle::IamUserBinding,
                },
            };
            SimAgent {
                iam_user: format!("svc-{id}"),
                key: key_id(rng, "AKIA"),
                principal_id: key_id(rng, "AIDA"),
                bucket: format!("{id}-workspace"),
                role: format!("arn:aws:iam::{account}:role/{id}-role"),
                chained_role: format!("arn:aws:iam::{account}:role/{id}-deploy"),
                source_ip: format!(
                    "10.{}.{}.{}",
                    20 + i / 250,
                    i % 250,
                    10 + rng.gen_range(0..200)
                ),
                owner: i % humans,
                template,
                style,
                id,
            }
        })
        .collect()
}

/// The action globs an agent's scope declares: its calls, plus `sts:AssumeRole` when it assumes roles.
fn scope_of(agent: &SimAgent) -> Scope {
    let mut actions: Vec<String> = agent
        .template
        .calls
        .iter()
        .map(|c| format!("{}:{}", c.service, c.operation))
        .collect();
    if matches!(agent.style, CredentialStyle::AssumesRole { .. }) {
        actions.push("sts:AssumeRole".into());
    }
    if agent.style == CredentialStyle::WebIdentity {
        actions.push("sts:AssumeRoleWithWebIdentity".into());
    }
    Scope {
        source: Source::CloudTrail,
        actions,
        resources: vec![
            format!("arn:aws:s3:::{}", agent.bucket),
            format!("arn:aws:s3:::{}/*", agent.bucket),
            format!("arn:aws:ssm:*:*:parameter/{}/*", agent.id),
            agent.role.clone(),
            agent.chained_role.clone(),
        ],
    }
}

pub(crate) fn inventory(humans: &[SimHuman], agents: &[SimAgent]) -> InventoryFile {
    InventoryFile {
        humans: humans
            .iter()
            .map(|h| Human {
                id: HumanId::new(&h.id),
                email: Some(h.email.clone()),
                aliases: Aliases {
                    aws_iam_user: vec![h.id.clone()],
                    sso_session: vec![h.email.clone()],
                    ..Aliases::default()
                },
                status: HumanStatus::Active,
                departed_at: None,
            })
            .collect(),
        agents: agents
            .iter()
            .map(|a| Agent {
                id: AgentId::new(&a.id),
                kind: a.template.kind,
                owner: HumanId::new(&humans[a.owner].id),
                runtime: Some(match a.template.kind {
                    AgentKind::Ci => format!("GitHub Actions, repo acme/{}", a.id),
                    AgentKind::Service => "eks prod cluster".into(),
                    _ => format!("{}'s laptop", humans[a.owner].id),
                }),
                credentials: match a.style {
                    CredentialStyle::DeclaredKey | CredentialStyle::AssumesRole { .. } => {
                        vec![CredentialId::new(&a.key)]
                    }
                    _ => Vec::new(),
                },
                aws_iam_users: match a.style {
                    CredentialStyle::IamUserBinding => vec![a.iam_user.clone()],
                    _ => Vec::new(),
                },
                principals: Vec::new(),
                aws_roles: match a.style {
                    CredentialStyle::WebIdentity => vec![a.role.clone()],
                    _ => Vec::new(),
                },
                user_agents: Vec::new(),
                scopes: vec![scope_of(a)],
            })
            .collect(),
    }
}
