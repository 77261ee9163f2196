//! Entra ID, GitHub and Vault/OpenBao activity of the same simulated estate, written
//! in each source's native export format:
//! - Entra: Azure Monitor diagnostic export, one record per line in hourly
//!   `PT1H.json` blobs under `Entra/insights-logs-<category>/…/y=/m=/d=/h=/m=00/`;
//! - GitHub: audit-log streaming to object storage, gzip JSON lines under
//!   `GitHub/<org>/YYYY/MM/DD/HH/`;
//! - Vault/OpenBao: the file audit device, request and response entries per call,
//!   one file per day under `Vault/`.
//!
//! Agents here are the same ones that act in CloudTrail: an AI agent or MCP server
//! also holds a GitHub fine-grained PAT of its owner and a Vault token created from
//! its owner's token; a service also has an Entra service principal signing in
//! with a client secret. One service owner's account is disabled during the run.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use chrono::{DateTime, Duration, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use lineage_core::inventory::{AgentKind, InventoryFile};
use lineage_core::CredentialId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::actors::{SimAgent, SimHuman};
use crate::cloudtrail::uuid;
use crate::truth::ExpectedAttribution;
use crate::SimError;

pub(crate) const ORG: &str = "acme";
pub(crate) const TENANT: &str = "7f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f";

fn hex(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| format!("{:x}", rng.gen_range(0..16u8)))
        .collect()
}

fn guid(rng: &mut ChaCha8Rng) -> String {
    uuid(rng)
}

/// Per-source identifiers of the estate's humans and agents.
pub(crate) struct Identities {
    pub(crate) login: Vec<String>,
    pub(crate) upn: Vec<String>,
    pub(crate) human_object_id: Vec<String>,
    /// (token id, hashed token) of an agent's fine-grained PAT.
    pub(crate) pat: Vec<Option<(u64, String)>>,
    /// (app id, service principal id, key id) of a service's Entra SP.
    pub(crate) app: Vec<Option<(String, String, String)>>,
    /// Index of the human whose account is disabled, and when.
    pub(crate) departed: Option<(usize, DateTime<Utc>)>,
}

impl Identities {
    pub(crate) fn build(
        rng: &mut ChaCha8Rng,
        humans: &[SimHuman],
        agents: &[SimAgent],
        start: DateTime<Utc>,
        days: u32,
    ) -> Self {
        let login = humans.iter().map(|h| format!("{}-acme", h.id)).collect();
        let upn = humans
            .iter()
            .map(|h| format!("{}@acme.onmicrosoft.com", h.id))
            .collect();
        let human_object_id = humans.iter().map(|_| guid(rng)).collect();
        let pat = agents
            .iter()
            .enumerate()
            .map(|(i, a)| {
                a.template.kind.is_ai().then(|| {
                    let hashed: String = {
                        use base64_like::encode;
                        encode(&(0..32).map(|_| rng.gen::<u8>()).collect::<Vec<_>>())
                    };
                    (4_000_000 + i as u64 * 7919, hashed)
                })
            })
            .collect();
        let app: Vec<Option<(String, String, String)>> = agents
            .iter()
            .map(|a| {
                (a.template.kind == AgentKind::Service).then(|| (guid(rng), guid(rng), guid(rng)))
            })
            .collect();
        // The owner of the first service with an Entra app leaves halfway through.
        let departed = (days >= 2)
            .then(|| {
                agents
                    .iter()
                    .zip(&app)
                    .find(|(_, app)| app.is_some())
                    .map(|(a, _)| a.owner)
            })
            .flatten()
            .map(|h| {
                (
                    h,
                    start + Duration::days(days as i64 / 2) + Duration::hours(11),
                )
            });
        Self {
            login,
            upn,
            human_object_id,
            pat,
            app,
            departed,
        }
    }

    /// Adds the per-source aliases and bindings to the inventory. Vault display names
    /// (`oidc-<e-mail>`) are deliberately not listed: the graph resolves them through the e-mail.
    pub(crate) fn extend_inventory(&self, inv: &mut InventoryFile, agents: &[SimAgent]) {
        for (i, h) in inv.humans.iter_mut().enumerate() {
            h.aliases.github.push(self.login[i].clone());
            h.aliases.entra_upn.push(self.upn[i].clone());
        }
        for (i, a) in inv.agents.iter_mut().enumerate() {
            if let Some((token_id, _)) = &self.pat[i] {
                a.credentials.push(CredentialId::new(token_id.to_string()));
                a.principals.push(format!("token-{}", agents[i].id));
            }
            if let Some((app_id, _, _)) = &self.app[i] {
                a.principals.push(app_id.clone());
            }
        }
    }
}

/// Minimal standard base64 (the simulator must not pull a dependency for fake hashes).
mod base64_like {
    pub(super) fn encode(bytes: &[u8]) -> String {
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
            for k in 0..4 {
                if k <= chunk.len() {
                    out.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

/// One record of a non-CloudTrail source, with its expected attribution.
pub(crate) struct Emitted {
    pub(crate) id: String,
    pub(crate) time: DateTime<Utc>,
    pub(crate) expected: ExpectedAttribution,
}

/// Buffers of one hour of non-CloudTrail records.
#[derive(Default)]
pub(crate) struct HourBuffers {
    pub(crate) entra: Vec<(DateTime<Utc>, &'static str, Value)>,
    pub(crate) github: Vec<(DateTime<Utc>, Value)>,
    pub(crate) vault: Vec<(DateTime<Utc>, Value)>,
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn iso(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6f0Z").to_string()
}

/// A GitHub API or git call made with an agent's fine-grained PAT (the PAT is its
/// owner's, so the actor is the owner's login).
pub(crate) fn github_token_use(
    rng: &mut ChaCha8Rng,
    buf: &mut HourBuffers,
    t: DateTime<Utc>,
    ids: &Identities,
    agent: &SimAgent,
    agent_index: usize,
    human: &SimHuman,
) -> Option<Emitted> {
    let (token_id, hashed) = ids.pat[agent_index].as_ref()?;
    let repo = format!("{ORG}/{}", agent.id.split('-').next().unwrap_or("app"));
    let (action, method, route, status) = match rng.gen_range(0..10) {
        0..=5 => (
            "api.request",
            "GET",
            "/repos/{owner}/{repo}/contents/{path}",
            200,
        ),
        6 => ("api.request", "GET", "/repos/{owner}/{repo}/pulls", 200),
        7 => (
            "api.request",
            "POST",
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            201,
        ),
        8 => ("git.clone", "", "", 0),
        _ => ("git.fetch", "", "", 0),
    };
    let id = format!("{}{}", hex(rng, 8), hex(rng, 14));
    let mut rec = json!({
        "@timestamp": ms(t),
        "_document_id": id,
        "action": action,
        "actor": ids.login[agent.owner],
        "actor_id": 9_000_000 + agent.owner as u64,
        "actor_ip": agent.source_ip,
        "actor_location": { "country_code": "NL" },
        "business": "acme-corp",
        "created_at": ms(t),
        "hashed_token": hashed,
        "operation_type": "access",
        "org": ORG,
        "org_id": 1_234_567,
        "programmatic_access_type": "Fine-grained personal access token",
        "repo": repo,
        "token_id": token_id,
        "user_agent": agent.template.user_agent,
    });
    if action == "api.request" {
        rec["request_method"] = json!(method);
        rec["route"] = json!(route);
        rec["status_code"] = json!(status);
        rec["url_path"] = json!(route.replace("{owner}/{repo}", &repo));
        rec["request_id"] = json!(format!(
            "{}:{}:{}",
            hex(rng, 4).to_uppercase(),
            hex(rng, 6).to_uppercase(),
            hex(rng, 8).to_uppercase()
        ));
    } else {
        rec["transport_protocol_name"] = json!("http");
        rec["repository"] = json!(repo);
    }
    buf.github.push((t, rec));
    Some(Emitted {
        id,
        time: t,
        expected: ExpectedAttribution {
            agent: Some(agent.id.clone()),
            owner: Some(human.id.clone()),
        },
    })
}

/// A human's own GitHub web activity (no token).
pub(crate) fn github_web_use(
    rng: &mut ChaCha8Rng,
    buf: &mut HourBuffers,
    t: DateTime<Utc>,
    ids: &Identities,
    human_index: usize,
    human: &SimHuman,
) -> Emitted {
    let id = format!("{}{}", hex(rng, 8), hex(rng, 14));
    let action = [
        "repo.download_zip",
        "pull_request.merge",
        "protected_branch.policy_override",
    ][rng.gen_range(0..3)];
    buf.github.push((
        t,
        json!({
            "@timestamp": ms(t),
            "_document_id": id,
            "action": action,
            "actor": ids.login[human_index],
            "actor_id": 9_000_000 + human_index as u64,
            "actor_ip": "10.1.0.5",
            "business": "acme-corp",
            "created_at": ms(t),
            "operation_type": "modify",
            "org": ORG,
            "org_id": 1_234_567,
            "repo": format!("{ORG}/platform"),
            "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Safari/605.1.15",
        }),
    ));
    Emitted {
        id,
        time: t,
        expected: ExpectedAttribution {
            agent: None,
            owner: Some(human.id.clone()),
        },
    }
}

/// A Vault token, as audit entries describe it.
#[derive(Clone)]
pub(crate) struct VaultToken {
    pub(crate) accessor: String,
    pub(crate) client_token: String,
    pub(crate) display_name: String,
    pub(crate) entity_id: String,
    pub(crate) policies: Vec<String>,
    pub(crate) issued: DateTime<Utc>,
}

fn vault_auth(tok: &VaultToken) -> Value {
    json!({
        "client_token": tok.client_token,
        "accessor": tok.accessor,
        "display_name": tok.display_name,
        "policies": tok.policies,
        "token_policies": tok.policies,
        "identity_policies": [],
        "entity_id": tok.entity_id,
        "token_type": "service",
        "token_ttl": 28800,
        "token_issue_time": tok.issued.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    })
}

/// One Vault call: a request entry and a response entry sharing `request.id`.
#[allow(clippy::too_many_arguments)]
fn vault_call(
    rng: &mut ChaCha8Rng,
    buf: &mut HourBuffers,
    t: DateTime<Utc>,
    auth: Option<&VaultToken>,
    operation: &str,
    path: &str,
    mount_type: &str,
    remote: &str,
    issued: Option<&VaultToken>,
    data: Value,
) -> String {
    let id = uuid(rng);
    let auth_json = auth
        .map(vault_auth)
        .unwrap_or_else(|| json!({ "token_type": "default" }));
    let request = json!({
        "id": id,
        "operation": operation,
        "mount_type": mount_type,
        "mount_accessor": format!("{mount_type}_{}", &id[..8]),
        "client_token": auth.map(|a| a.client_token.clone()).unwrap_or_default(),
        "client_token_accessor": auth.map(|a| a.accessor.clone()).unwrap_or_default(),
        "namespace": { "id": "root" },
        "path": path,
        "data": data,
        "remote_address": remote,
        "remote_port": 50000 + rng.gen_range(0..10000),
    });
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string();
    buf.vault.push((
        t,
        json!({ "time": time(t), "type": "request", "auth": auth_json, "request": request }),
    ));
    let mut response = json!({ "mount_type": mount_type });
    if let Some(tok) = issued {
        let mut a = vault_auth(tok);
        a["client_token"] = json!(tok.client_token);
        response["auth"] = a;
    } else if operation == "read" {
        response["data"] =
            json!({ "data": { "password": format!("hmac-sha256:{}", hex(rng, 64)) } });
    }
    let t2 = t + Duration::milliseconds(3);
    buf.vault.push((t2, json!({ "time": time(t2), "type": "response", "auth": auth_json, "request": request, "response": response })));
    id
}

pub(crate) fn new_vault_token(
    rng: &mut ChaCha8Rng,
    display_name: String,
    policies: Vec<String>,
    issued: DateTime<Utc>,
) -> VaultToken {
    VaultToken {
        accessor: format!("hmac-sha256:{}", hex(rng, 64)),
        client_token: format!("hmac-sha256:{}", hex(rng, 64)),
        display_name,
        entity_id: guid(rng),
        policies,
        issued,
    }
}

/// A human's OIDC login: the response issues their token.
pub(crate) fn vault_login(
    rng: &mut ChaCha8Rng,
    buf: &mut HourBuffers,
    t: DateTime<Utc>,
    human: &SimHuman,
) -> (VaultToken, Emitted) {
    let tok = new_vault_token(
        rng,
        format!("oidc-{}", human.email),
        vec!["default".into(), "developer".into()],
        t,
    );
    let id = vault_call(
        rng,
        buf,
        t,
        None,
        "update",
        "auth/oidc/oidc/callback",
        "oidc",
        "10.1.0.5",
        Some(&tok),
        json!({}),
    );
    (
        tok,
        Emitted {
            id,
            time: t,
            expected: ExpectedAttribution {
                agent: None,
                owner: Some(human.id.clone()),
            },
        },
    )
}

/// The owner's token creates the agent's child token (the agent's bootstrap).
pub(crate) fn vault_child_token(
    rng: &mut ChaCha8Rng,
    buf: &mut HourBuffers,
    t: DateTime<Utc>,
    parent: &VaultToken,
    agent: &SimAgent,
    human: &SimHuman,
) -> (VaultToken, Emitted) {
    let tok = new_vault_token(
        rng,
        format!("token-{}", agent.id),
        vec!["default".into(), format!("{}-read", agent.id)],
        t,
    );
    let data = json!({ "display_name": format!("hmac-sha256:{}", hex(rng, 64)), "policies": [format!("hmac-sha256:{}", hex(rng, 64))] });
    let id = vault_call(
        rng,
        buf,
        t,
        Some(parent),
        "update",
        "auth/token/create",
        "token",
        "10.1.0.5",
        Some(&tok),
        data,
    );
    (
        tok,
        Emitted {
            id,
            time: t,
            expected: ExpectedAttribution {
                agent: None,
                owner: Some(human.id.clone()),
            },
        },
    )
}

/// A secret read with a token.
pub(crate) fn vault_read(
    rng: &mut ChaCha8Rng,
    buf: &mut HourBuffers,
    t: DateTime<Utc>,
    tok: &VaultToken,
    path: String,
    remote: &str,
    expected: ExpectedAttribution,
) -> Emitted {
    let id = vault_call(
        rng,
        buf,
        t,
        Some(tok),
        "read",
        &path,
        "kv",
        remote,
        None,
        Value::Null,
    );
    Emitted {
        id,
        time: t,
        expected,
    }
}

/// A service principal's client-credentials sign-in.
pub(crate) fn entra_sp_signin(
    rng: &mut ChaCha8Rng,
    buf: &mut HourBuffers,
    t: DateTime<Utc>,
    ids: &Identities,
    agent: &SimAgent,
    agent_index: usize,
    human: &SimHuman,
) -> Option<Emitted> {
    let (app_id, sp_id, key_id) = ids.app[agent_index].as_ref()?;
    let id = guid(rng);
    buf.entra.push((
        t,
        "ServicePrincipalSignInLogs",
        json!({
            "time": iso(t),
            "resourceId": format!("/tenants/{TENANT}/providers/Microsoft.aadiam"),
            "operationName": "Sign-in activity",
            "operationVersion": "1.0",
            "category": "ServicePrincipalSignInLogs",
            "tenantId": TENANT,
            "resultType": "0",
            "resultSignature": "None",
            "durationMs": 0,
            "callerIpAddress": agent.source_ip,
            "correlationId": guid(rng),
            "Level": 4,
            "location": "NL",
            "properties": {
                "id": id,
                "createdDateTime": iso(t),
                "appId": app_id,
                "appDisplayName": agent.id,
                "ipAddress": agent.source_ip,
                "correlationId": guid(rng),
                "resourceDisplayName": "Microsoft Graph",
                "resourceId": "00000003-0000-0000-c000-000000000000",
                "servicePrincipalId": sp_id,
                "servicePrincipalName": agent.id,
                "servicePrincipalCredentialKeyId": key_id,
                "servicePrincipalCredentialThumbprint": "",
                "clientCredentialType": "clientSecret",
                "status": { "errorCode": 0 },
                "location": { "city": "Amsterdam", "state": "Noord-Holland", "countryOrRegion": "NL" },
                "conditionalAccessStatus": "notApplied",
            },
        }),
    ));
    Some(Emitted {
        id,
        time: t,
        expected: ExpectedAttribution {
            agent: Some(agent.id.clone()),
            owner: Some(human.id.clone()),
        },
    })
}

/// A human's interactive sign-in.
pub(crate) fn entra_user_signin(
    rng: &mut ChaCha8Rng,
    buf: &mut HourBuffers,
    t: DateTime<Utc>,
    ids: &Identities,
    hi: usize,
    human: &SimHuman,
) -> Emitted {
    let id = guid(rng);
    buf.entra.push((
        t,
        "SignInLogs",
        json!({
            "time": iso(t),
            "resourceId": format!("/tenants/{TENANT}/providers/Microsoft.aadiam"),
            "operationName": "Sign-in activity",
            "category": "SignInLogs",
            "tenantId": TENANT,
            "resultType": "0",
            "callerIpAddress": "10.1.0.5",
            "identity": human.id,
            "properties": {
                "id": id,
                "createdDateTime": iso(t),
                "userPrincipalName": ids.upn[hi],
                "userId": ids.human_object_id[hi],
                "userDisplayName": human.id,
                "appId": "04b07795-8ddb-461a-bbee-02f9e1bf7b46",
                "appDisplayName": "Microsoft Azure CLI",
                "ipAddress": "10.1.0.5",
                "clientAppUsed": "Mobile Apps and Desktop clients",
                "userAgent": "python-requests/2.32.3",
                "resourceDisplayName": "Windows Azure Service Management API",
                "resourceId": "797f4846-ba00-4fd7-ba43-dac1f8f63013",
                "status": { "errorCode": 0 },
                "isInteractive": true,
                "location": { "city": "Amsterdam", "countryOrRegion": "NL" },
            },
        }),
    ));
    Emitted {
        id,
        time: t,
        expected: ExpectedAttribution {
            agent: None,
            owner: Some(human.id.clone()),
        },
    }
}

/// A directory audit by an admin: a credential added to an app, or an account disabled.
pub(crate) fn entra_audit(
    rng: &mut ChaCha8Rng,
    buf: &mut HourBuffers,
    t: DateTime<Utc>,
    activity: &str,
    admin_upn: &str,
    target: Value,
    admin: &SimHuman,
) -> Emitted {
    let id = format!("Directory_{}", guid(rng));
    buf.entra.push((
        t,
        "AuditLogs",
        json!({
            "time": iso(t),
            "resourceId": format!("/tenants/{TENANT}/providers/Microsoft.aadiam"),
            "operationName": activity,
            "operationVersion": "1.0",
            "category": "AuditLogs",
            "tenantId": TENANT,
            "resultSignature": "None",
            "durationMs": 0,
            "callerIpAddress": "10.1.0.5",
            "correlationId": guid(rng),
            "Level": 4,
            "properties": {
                "id": id,
                "category": if activity.contains("user") || activity.contains("account") { "UserManagement" } else { "ApplicationManagement" },
                "correlationId": guid(rng),
                "result": "success",
                "resultReason": "",
                "activityDisplayName": activity,
                "activityDateTime": iso(t),
                "loggedByService": "Core Directory",
                "operationType": "Update",
                "initiatedBy": { "user": { "id": guid(rng), "displayName": null, "userPrincipalName": admin_upn, "ipAddress": "10.1.0.5" } },
                "targetResources": [target],
                "additionalDetails": [],
            },
        }),
    ));
    Emitted {
        id,
        time: t,
        expected: ExpectedAttribution {
            agent: None,
            owner: Some(admin.id.clone()),
        },
    }
}

/// Writes the hour's non-CloudTrail records; returns (files, bytes).
pub(crate) fn flush(
    buf: &mut HourBuffers,
    root: &Path,
    hour_start: DateTime<Utc>,
) -> Result<(u64, u64), SimError> {
    let io = |p: &Path, e| SimError::Io(p.display().to_string(), e);
    let (mut files, mut bytes) = (0u64, 0u64);
    let mut by_category: std::collections::BTreeMap<&str, Vec<(DateTime<Utc>, Value)>> =
        Default::default();
    for (t, c, v) in buf.entra.drain(..) {
        by_category.entry(c).or_default().push((t, v));
    }
    for (category, mut recs) in by_category {
        recs.sort_by_key(|r| r.0);
        let dir = root
            .join("Entra")
            .join(format!("insights-logs-{}", category.to_ascii_lowercase()))
            .join(format!(
                "resourceId=/tenants/{TENANT}/providers/microsoft.aadiam/{}/m=00",
                hour_start.format("y=%Y/m=%m/d=%d/h=%H")
            ));
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let path = dir.join("PT1H.json");
        let mut w = BufWriter::new(File::create(&path).map_err(|e| io(&path, e))?);
        for (_, r) in recs {
            let line = serde_json::to_string(&r).expect("json");
            bytes += line.len() as u64 + 1;
            writeln!(w, "{line}").map_err(|e| io(&path, e))?;
        }
        w.flush().map_err(|e| io(&path, e))?;
        files += 1;
    }
    if !buf.github.is_empty() {
        let mut recs = std::mem::take(&mut buf.github);
        recs.sort_by_key(|r| r.0);
        let dir = root
            .join("GitHub")
            .join(ORG)
            .join(hour_start.format("%Y/%m/%d/%H").to_string());
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let path = dir.join(format!("{}.json.gz", hour_start.format("%Y%m%dT%H%M%SZ")));
        let mut gz = GzEncoder::new(
            BufWriter::new(File::create(&path).map_err(|e| io(&path, e))?),
            Compression::fast(),
        );
        for (_, r) in recs {
            let line = serde_json::to_string(&r).expect("json");
            bytes += line.len() as u64 + 1;
            writeln!(gz, "{line}").map_err(|e| io(&path, e))?;
        }
        gz.finish()
            .and_then(|mut w| w.flush())
            .map_err(|e| io(&path, e))?;
        files += 1;
    }
    if !buf.vault.is_empty() {
        let mut recs = std::mem::take(&mut buf.vault);
        recs.sort_by_key(|r| r.0);
        let dir = root.join("Vault");
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let path = dir.join(format!("audit-{}.log", hour_start.format("%Y-%m-%d")));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        let mut w = BufWriter::new(file);
        for (_, r) in recs {
            let line = serde_json::to_string(&r).expect("json");
            bytes += line.len() as u64 + 1;
            writeln!(w, "{line}").map_err(|e| io(&path, e))?;
        }
        w.flush().map_err(|e| io(&path, e))?;
        if hour_start.format("%H").to_string() == "00" {
            files += 1;
        }
    }
    Ok((files, bytes))
}
