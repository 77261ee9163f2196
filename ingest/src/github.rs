//! GitHub audit log: organization and enterprise audit events, as the REST API
//! returns them (`GET /orgs/{org}/audit-log`, `GET /enterprises/{e}/audit-log`: a bare
//! JSON array of events), as audit-log streaming writes them (one JSON object per
//! line, the same fields; Azure Event Hubs, S3, Azure Blob, GCS and Splunk carry the
//! same objects), as the UI's JSON export writes them, and in the older API format
//! that has no `_document_id`, only `created_at`. The Microsoft Sentinel sample
//! (`Github_sample_logs.json`) is this native shape; the columns of Sentinel's own
//! tables (`GitHubAuditLogPolling_CL`, …) are not read.
//!
//! # Field mapping
//!
//! | [`CredentialUse`] | GitHub field |
//! |---|---|
//! | `event_id` | `_document_id`; without one (older records), `sha256:` + 16 hex of the record's bytes ([`fingerprint`]), so replays give the same id |
//! | `time` | `@timestamp`, else `created_at`: epoch milliseconds (number or digit string; values below 10¹¹ are taken as seconds) or an RFC 3339 / ISO 8601 string |
//! | `credential` | events authenticated by a token (a non-zero `token_id` or `hashed_token`): `id` = `token_id` (the number in the token's settings URL, what an inventory declares), else `hashed_token` (base64 SHA-256 of the token; GitHub App server-to-server tokens log `token_id: 0`); `kind` from `programmatic_access_type` (below); `issuer` = `org`, else `business`. No token fields: `None` (a web session) |
//! | `principal` | `kind` = `service-principal` for apps and bots (`actor` ending in `[bot]`, `actor_is_bot`, or a GitHub App server-to-server token), else `user`; `name` = `actor` (the login the inventory binds: `aliases.github`, agent `principals`); `id` = `actor_id`; `account` = `org`, else `business` |
//! | `client` | `user_agent`, `actor_ip`; `client_app` = `oauth_application_name` on token-authenticated events; `mcp_server` from the user agent |
//! | `operation` | `service` = `"github"`, `name` = `action`; so scope globs read `github:git.clone`, `github:api.request`, `github:repo.*`. `read_only`: `api.request` by `request_method` (GET, HEAD, OPTIONS), `git.clone`/`git.fetch` true, `git.push` false, otherwise from `operation_type` (`access` true; `create`, `modify`, `remove`, `transfer`, `restore` false) |
//! | `resources` | `repo` (else `repository`, else the `owner/name` in a `/repos/…` `url_path`), then `repositories_added_names` and `repositories_removed_names`, then `"<request_method> <route>"` (e.g. `GET /repos/{owner}/{repo}/pulls`). A resource-scoped `[[agent.scope]]` must therefore list route globs too, e.g. `resources = ["acme/*", "GET /repos/*"]` |
//! | `outcome` | failure when `status_code` ≥ 400 (`error_code` = the status code), or the action itself is a failure (`user.failed_login`, `*_failure`, `protected_branch.rejected_ref_update`; `error_code` = the part after the last `.`) |
//! | `region` | `actor_location.country_code` |
//!
//! `programmatic_access_type` → [`CredentialKind`] (case-insensitive): `… (classic)` →
//! `github-classic-pat`; `Fine-grained personal access token` →
//! `github-fine-grained-pat`; anything naming a GitHub App, `server-to-server`,
//! `user-to-server` or `installation` → `github-app-token`; anything naming OAuth →
//! `github-oauth-token`; otherwise (SSH key, deploy key, absent) `unknown`.
//!
//! # Facts (only when the outcome is a success)
//!
//! In the token lifecycle actions (`personal_access_token.*`, `oauth_access.*`,
//! `oauth_authorization.*`) the token fields describe the token being created or
//! revoked, not the caller's credential, so those uses have no credential.
//!
//! | action | fact |
//! |---|---|
//! | `personal_access_token.create`, `.request_created`, `.access_granted` | `credential-issued`: child = the token (`token_id`, else `hashed_token`; kind from `programmatic_access_type`, else `github-fine-grained-pat`), issued by the actor, to `user` (the token owner) else the actor, method `other`, no parent |
//! | `oauth_access.create`, `oauth_access.regenerate`, `oauth_authorization.create` | `credential-issued` as above; kind `unknown` without `programmatic_access_type` (GitHub logs classic PATs as OAuth accesses too, so the kind is left for the token's first use to tell) |
//! | `integration_installation.create` | `credential-issued`: child kind `github-app-token`, id = `installation_id`, else the `integration` (app) name; issued to the app |
//! | `public_key.create`, `deploy_key.create` | `credential-issued`: child kind `unknown`, id = `fingerprint`, else `key_id`; issued to `user` else the actor (public key), or to the `repo` (deploy key) |
//! | `personal_access_token.access_revoked`, `oauth_authorization.destroy`, `oauth_access.revoke` | `credential-status-changed` to `Revoked` |
//! | `personal_access_token.destroy`, `oauth_access.destroy`, `public_key.delete`, `deploy_key.delete` | `credential-status-changed` to `Deleted` |
//! | `org.remove_member`, `business.remove_member` | `owner-departed` for the removed `user` login |
//! | `org.add_member`, `business.add_member` | `owner-reinstated` for the added `user` login (undoes a departure learned from the logs) |
//!
//! A lifecycle event without a token id (the real samples log `access_granted` and
//! `access_revoked` with only the token's name) yields no fact: a fact about a
//! credential nobody can name would never link to its uses. The real samples log
//! `personal_access_token.create` and `oauth_access.create` with `hashed_token` only,
//! while API calls made with the same token carry `token_id` too, so such a creation
//! fact names the token by its hash and the uses by its id: the two do not meet in the
//! graph until credential ids can have aliases.
//!
//! Token values never appear in GitHub audit events; `hashed_token` is already a hash.

use std::fmt;

use chrono::{DateTime, Utc};
use lineage_core::secret::fingerprint;
use lineage_core::{
    ClientHints, CredentialId, CredentialKind, CredentialRef, CredentialUse, FactKind,
    IssuanceMethod, LineageFact, Operation, Outcome, Principal, PrincipalKind, Provenance,
    SessionContext, Source,
};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use smol_str::SmolStr;

use crate::cloudtrail::mcp_server_from_user_agent;
use crate::lenient::{LenientBool, LenientObject, LenientStr};
use crate::{Normalized, ParseError, SourceParser};

/// The GitHub audit-log parser.
#[derive(Debug, Default, Clone, Copy)]
pub struct GitHubParser;

/// The fields read; everything else in the record is skipped unread.
#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "@timestamp", default)]
    timestamp: Option<LenientTime>,
    #[serde(default)]
    created_at: Option<LenientTime>,
    #[serde(rename = "_document_id", borrow, default)]
    document_id: LenientStr<'a>,
    #[serde(borrow, default)]
    action: LenientStr<'a>,
    #[serde(borrow, default)]
    actor: LenientStr<'a>,
    #[serde(borrow, default)]
    actor_id: LenientStr<'a>,
    #[serde(borrow, default)]
    actor_ip: LenientStr<'a>,
    #[serde(default)]
    actor_is_bot: LenientBool,
    #[serde(borrow, default)]
    actor_location: LenientObject<RawLocation<'a>>,
    #[serde(borrow, default)]
    user: LenientStr<'a>,
    #[serde(borrow, default)]
    org: LenientStr<'a>,
    #[serde(borrow, default)]
    business: LenientStr<'a>,
    #[serde(borrow, default)]
    repo: LenientStr<'a>,
    #[serde(borrow, default)]
    repository: LenientStr<'a>,
    #[serde(default)]
    repositories_added_names: LenientStrList,
    #[serde(default)]
    repositories_removed_names: LenientStrList,
    #[serde(borrow, default)]
    hashed_token: LenientStr<'a>,
    #[serde(borrow, default)]
    token_id: LenientStr<'a>,
    #[serde(borrow, default)]
    programmatic_access_type: LenientStr<'a>,
    #[serde(borrow, default)]
    oauth_application_name: LenientStr<'a>,
    #[serde(borrow, default)]
    user_agent: LenientStr<'a>,
    #[serde(borrow, default)]
    request_method: LenientStr<'a>,
    #[serde(borrow, default)]
    route: LenientStr<'a>,
    #[serde(borrow, default)]
    url_path: LenientStr<'a>,
    #[serde(borrow, default)]
    status_code: LenientStr<'a>,
    #[serde(borrow, default)]
    operation_type: LenientStr<'a>,
    #[serde(borrow, default)]
    integration: LenientStr<'a>,
    #[serde(borrow, default)]
    installation_id: LenientStr<'a>,
    #[serde(borrow, default)]
    fingerprint: LenientStr<'a>,
    #[serde(borrow, default)]
    key_id: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawLocation<'a> {
    #[serde(borrow, default)]
    country_code: LenientStr<'a>,
}

/// A time as epoch milliseconds (number or digit string) or an ISO 8601 string;
/// anything else deserializes to `LenientTime(None)` with the original text kept
/// for the error message.
struct LenientTime(Result<DateTime<Utc>, String>);

impl LenientTime {
    fn from_millis(ms: i64) -> Result<DateTime<Utc>, String> {
        // Seconds rather than milliseconds below 10^11 (10^11 ms is March 1973).
        let t = if ms.unsigned_abs() < 100_000_000_000 {
            DateTime::from_timestamp(ms, 0)
        } else {
            DateTime::from_timestamp_millis(ms)
        };
        t.ok_or_else(|| format!("`{ms}` is out of range"))
    }

    fn from_text(text: &str) -> Result<DateTime<Utc>, String> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse::<i64>()
                .map_err(|_| format!("`{text}` is out of range"))
                .and_then(Self::from_millis);
        }
        if let Some(t) = crate::time::parse_time(text) {
            return Ok(t);
        }
        Err(format!(
            "`{}` is neither epoch milliseconds nor an ISO 8601 time",
            text.chars().take(64).collect::<String>()
        ))
    }
}

impl<'de> Deserialize<'de> for LenientTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientTime;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("epoch milliseconds or an ISO 8601 time")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(LenientTime(LenientTime::from_millis(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(LenientTime(
                    i64::try_from(v)
                        .map_err(|_| format!("`{v}` is out of range"))
                        .and_then(LenientTime::from_millis),
                ))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(LenientTime(if v.is_finite() && v.abs() < 9.0e15 {
                    LenientTime::from_millis(v as i64)
                } else {
                    Err(format!("`{v}` is out of range"))
                }))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LenientTime(LenientTime::from_text(v)))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(LenientTime(Err(format!("is a boolean ({v})"))))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientTime(Err("is null".into())))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientTime(Err("is null".into())))
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientTime(Err("is an array".into())))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientTime(Err("is an object".into())))
            }
        }
        d.deserialize_any(V)
    }
}

/// An array of strings that tolerates any other value (kept as empty) and
/// non-string entries (skipped).
#[derive(Default)]
struct LenientStrList(Vec<SmolStr>);

impl<'de> Deserialize<'de> for LenientStrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LenientStrList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<LenientStr<'_>>()? {
                    if let Some(s) = item.get() {
                        out.push(SmolStr::new(s));
                    }
                }
                Ok(LenientStrList(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientStrList::default())
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
                Ok(LenientStrList::default())
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Ok(LenientStrList::default())
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Ok(LenientStrList::default())
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Ok(LenientStrList::default())
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(LenientStrList::default())
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientStrList::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(LenientStrList::default())
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(V)
    }
}

fn s(v: &LenientStr<'_>) -> Option<SmolStr> {
    v.get().map(SmolStr::new)
}

/// An id field, where GitHub writes `0` (or an empty string) for "none".
fn id_field<'a>(v: &'a LenientStr<'_>) -> Option<&'a str> {
    v.get()
        .map(str::trim)
        .filter(|t| !t.is_empty() && *t != "0")
}

impl SourceParser for GitHubParser {
    fn source(&self) -> Source {
        Source::GitHub
    }

    /// The REST API and the UI export return a bare array, streaming writes JSON
    /// lines; `value` covers the rare wrapped batch.
    fn envelope_keys(&self) -> &'static [&'static str] {
        &["value"]
    }

    fn parse_record(&self, bytes: &[u8], provenance: Provenance) -> Result<Normalized, ParseError> {
        // serde would read a JSON array positionally into the struct's fields.
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(match serde_json::from_slice::<IgnoredAny>(bytes) {
                Ok(_) => ParseError::NotARecord("GitHub audit event is not a JSON object".into()),
                Err(e) => ParseError::InvalidJson(e.to_string()),
            });
        }
        let raw: RawEvent<'_> = serde_json::from_slice(bytes).map_err(|e| {
            if e.classify() == serde_json::error::Category::Data {
                ParseError::NotARecord(format!("GitHub audit event is not a JSON object: {e}"))
            } else {
                ParseError::InvalidJson(e.to_string())
            }
        })?;
        normalize(raw, bytes, provenance)
    }
}

fn event_time(raw: &RawEvent<'_>) -> Result<DateTime<Utc>, ParseError> {
    match (&raw.timestamp, &raw.created_at) {
        (Some(LenientTime(Ok(t))), _) => Ok(*t),
        (_, Some(LenientTime(Ok(t)))) => Ok(*t),
        (Some(LenientTime(Err(why))), _) => {
            Err(ParseError::InvalidField("@timestamp", why.clone()))
        }
        (None, Some(LenientTime(Err(why)))) => {
            Err(ParseError::InvalidField("created_at", why.clone()))
        }
        (None, None) => Err(ParseError::MissingField("@timestamp")),
    }
}

/// Actions whose token fields name the token being created or revoked, not the
/// credential that made the call.
fn is_token_lifecycle(action: &str) -> bool {
    action.starts_with("personal_access_token.")
        || action.starts_with("oauth_access.")
        || action.starts_with("oauth_authorization.")
}

/// The credential kind a `programmatic_access_type` names.
fn kind_of(access_type: Option<&str>) -> CredentialKind {
    let Some(t) = access_type else {
        return CredentialKind::Unknown;
    };
    let t = t.to_ascii_lowercase();
    if t.contains("classic") {
        CredentialKind::GithubClassicPat
    } else if t.contains("fine-grained") || t.contains("fine grained") {
        CredentialKind::GithubFineGrainedPat
    } else if t.contains("github app")
        || t.contains("server-to-server")
        || t.contains("user-to-server")
        || t.contains("installation")
    {
        CredentialKind::GithubAppToken
    } else if t.contains("oauth") {
        CredentialKind::GithubOauthToken
    } else {
        CredentialKind::Unknown
    }
}

/// The token an event names: a non-zero `token_id`, else `hashed_token`.
fn token_id_of<'a>(raw: &'a RawEvent<'_>) -> Option<&'a str> {
    id_field(&raw.token_id).or_else(|| id_field(&raw.hashed_token))
}

fn normalize(
    raw: RawEvent<'_>,
    bytes: &[u8],
    provenance: Provenance,
) -> Result<Normalized, ParseError> {
    let action = raw.action.get().ok_or(ParseError::MissingField("action"))?;
    let time = event_time(&raw)?;
    let event_id = match raw.document_id.get() {
        Some(id) => SmolStr::new(id),
        // serde_json accepted the bytes, so they are UTF-8; lossy is only a guard.
        None => SmolStr::new(fingerprint(&String::from_utf8_lossy(bytes))),
    };
    let org = s(&raw.org).or_else(|| s(&raw.business));
    let access_type = raw.programmatic_access_type.get();

    let lifecycle = is_token_lifecycle(action);
    let credential = if lifecycle {
        None
    } else {
        token_id_of(&raw).map(|id| CredentialRef {
            kind: kind_of(access_type),
            id: CredentialId::new(id),
            issuer: org.clone(),
        })
    };

    let is_app_server_token = access_type.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t.contains("server-to-server") || t.contains("installation")
    });
    let principal = match raw.actor.get() {
        Some(actor) => Principal {
            kind: if actor.ends_with("[bot]")
                || raw.actor_is_bot.0 == Some(true)
                || (!lifecycle && is_app_server_token)
            {
                PrincipalKind::ServicePrincipal
            } else {
                PrincipalKind::User
            },
            id: id_field(&raw.actor_id).map(SmolStr::new),
            name: Some(SmolStr::new(actor)),
            arn: None,
            account: org.clone(),
        },
        None => Principal {
            id: id_field(&raw.actor_id).map(SmolStr::new),
            account: org.clone(),
            ..Principal::unknown()
        },
    };

    let method = raw.request_method.get().map(str::to_ascii_uppercase);
    let read_only = match action {
        "api.request" => method
            .as_deref()
            .map(|m| matches!(m, "GET" | "HEAD" | "OPTIONS")),
        "git.clone" | "git.fetch" => Some(true),
        "git.push" => Some(false),
        _ => match raw.operation_type.get() {
            Some("access") => Some(true),
            Some("create" | "modify" | "remove" | "transfer" | "restore") => Some(false),
            _ => None,
        },
    };
    let operation = Operation {
        service: SmolStr::new_static("github"),
        name: SmolStr::new(action),
        read_only,
    };

    let mut resources: Vec<SmolStr> = Vec::new();
    let mut push = |r: SmolStr| {
        if !resources.contains(&r) {
            resources.push(r);
        }
    };
    if let Some(repo) = s(&raw.repo)
        .or_else(|| s(&raw.repository))
        .or_else(|| raw.url_path.get().and_then(repo_from_path))
    {
        push(repo);
    }
    for r in raw
        .repositories_added_names
        .0
        .iter()
        .chain(&raw.repositories_removed_names.0)
    {
        push(r.clone());
    }
    if let Some(route) = raw.route.get() {
        push(match &method {
            Some(m) => SmolStr::new(format!("{m} {route}")),
            None => SmolStr::new(route),
        });
    }

    let outcome = outcome_of(action, raw.status_code.get());
    let client = ClientHints {
        user_agent: s(&raw.user_agent),
        source_ip: s(&raw.actor_ip),
        client_app: if credential.is_some() {
            s(&raw.oauth_application_name)
        } else {
            None
        },
        mcp_server: raw.user_agent.get().and_then(mcp_server_from_user_agent),
    };
    let region = raw
        .actor_location
        .0
        .as_ref()
        .and_then(|l| s(&l.country_code));

    let facts = if outcome.success {
        facts_of(action, &raw, &event_id, time, &principal, org.as_ref())
    } else {
        Vec::new()
    };

    Ok(Normalized::whole(
        CredentialUse {
            source: Source::GitHub,
            event_id,
            time,
            credential,
            principal,
            session: SessionContext::default(),
            client,
            operation,
            resources,
            outcome,
            region,
            provenance,
        },
        facts,
    ))
}

/// `owner/name` from a REST path `/repos/{owner}/{name}/…` (also under `/api/v3`).
fn repo_from_path(path: &str) -> Option<SmolStr> {
    let path = path.split(['?', '#']).next().unwrap_or(path);
    let path = path.strip_prefix("/api/v3").unwrap_or(path);
    let rest = path.strip_prefix("/repos/")?;
    let mut parts = rest.split('/');
    let owner = parts.next().filter(|p| !p.is_empty())?;
    let name = parts.next().filter(|p| !p.is_empty())?;
    Some(SmolStr::new(format!("{owner}/{name}")))
}

fn outcome_of(action: &str, status_code: Option<&str>) -> Outcome {
    if let Some(code) = status_code.map(str::trim) {
        if code.parse::<u16>().is_ok_and(|c| c >= 400) {
            return Outcome {
                success: false,
                error_code: Some(SmolStr::new(code)),
            };
        }
    }
    let verb = action.rsplit('.').next().unwrap_or(action);
    if verb == "failed_login" || verb.ends_with("_failure") || verb == "rejected_ref_update" {
        return Outcome {
            success: false,
            error_code: Some(SmolStr::new(verb)),
        };
    }
    Outcome::ok()
}

fn facts_of(
    action: &str,
    raw: &RawEvent<'_>,
    event_id: &SmolStr,
    time: DateTime<Utc>,
    principal: &Principal,
    org: Option<&SmolStr>,
) -> Vec<LineageFact> {
    let fact = |kind| LineageFact {
        time,
        source: Source::GitHub,
        event_id: event_id.clone(),
        kind,
    };
    let access_type = raw.programmatic_access_type.get();
    let token = |default: CredentialKind| {
        token_id_of(raw).map(|id| CredentialRef {
            kind: match kind_of(access_type) {
                CredentialKind::Unknown => default,
                k => k,
            },
            id: CredentialId::new(id),
            issuer: org.cloned(),
        })
    };
    let owner = || s(&raw.user).or_else(|| principal.name.clone());
    let issued = |child: CredentialRef, issued_to: Option<SmolStr>| {
        fact(FactKind::CredentialIssued {
            parent: None,
            child,
            issued_by: principal.clone(),
            issued_to,
            method: IssuanceMethod::Other,
            session_name: None,
            source_identity: None,
        })
    };
    let status = |credential: CredentialRef, status: &'static str| {
        fact(FactKind::CredentialStatusChanged {
            credential,
            status: SmolStr::new_static(status),
            changed_by: principal.clone(),
        })
    };
    let key = || {
        id_field(&raw.fingerprint)
            .or_else(|| id_field(&raw.key_id))
            .map(|id| CredentialRef {
                kind: CredentialKind::Unknown,
                id: CredentialId::new(id),
                issuer: org.cloned(),
            })
    };
    let out = match action {
        "personal_access_token.create"
        | "personal_access_token.request_created"
        | "personal_access_token.access_granted" => {
            token(CredentialKind::GithubFineGrainedPat).map(|child| issued(child, owner()))
        }
        "oauth_access.create" | "oauth_access.regenerate" | "oauth_authorization.create" => {
            token(CredentialKind::Unknown).map(|child| issued(child, owner()))
        }
        "integration_installation.create" => {
            let app = s(&raw.integration);
            id_field(&raw.installation_id)
                .map(SmolStr::new)
                .or_else(|| app.clone())
                .map(|id| {
                    issued(
                        CredentialRef {
                            kind: CredentialKind::GithubAppToken,
                            id: CredentialId::new(id.as_str()),
                            issuer: org.cloned(),
                        },
                        app,
                    )
                })
        }
        "public_key.create" => key().map(|child| issued(child, owner())),
        "deploy_key.create" => {
            let to = s(&raw.repo)
                .or_else(|| s(&raw.repository))
                .or_else(|| principal.name.clone());
            key().map(|child| issued(child, to))
        }
        "personal_access_token.access_revoked"
        | "oauth_authorization.destroy"
        | "oauth_access.revoke" => token(CredentialKind::Unknown).map(|c| status(c, "Revoked")),
        "personal_access_token.destroy" | "oauth_access.destroy" => {
            token(CredentialKind::Unknown).map(|c| status(c, "Deleted"))
        }
        "public_key.delete" | "deploy_key.delete" => key().map(|c| status(c, "Deleted")),
        "org.remove_member" | "business.remove_member" => {
            s(&raw.user).map(|human| fact(FactKind::OwnerDeparted { human }))
        }
        "org.add_member" | "business.add_member" => {
            s(&raw.user).map(|human| fact(FactKind::OwnerReinstated { human }))
        }
        _ => None,
    };
    out.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Normalized, ParseError> {
        GitHubParser.parse_record(json.as_bytes(), Provenance::file("t", 1))
    }

    #[test]
    fn times_in_every_form() {
        let t = |v: &str| {
            parse(&format!(r#"{{"action":"repo.create","@timestamp":{v}}}"#))
                .map(|n| n.use_.time.to_rfc3339())
        };
        assert_eq!(t("1711431195806").unwrap(), "2024-03-26T05:33:15.806+00:00");
        assert_eq!(
            t("\"1711431195806\"").unwrap(),
            "2024-03-26T05:33:15.806+00:00"
        );
        assert_eq!(t("1711431195").unwrap(), "2024-03-26T05:33:15+00:00");
        assert_eq!(
            t("\"2024-03-26T05:33:15.806Z\"").unwrap(),
            "2024-03-26T05:33:15.806+00:00"
        );
        assert_eq!(
            t("\"2024-03-26 05:33:15\"").unwrap(),
            "2024-03-26T05:33:15+00:00"
        );
        assert!(matches!(
            t("\"yesterday\""),
            Err(ParseError::InvalidField("@timestamp", _))
        ));
        assert!(matches!(t("1e300"), Err(ParseError::InvalidField(..))));
        assert!(matches!(t("[1]"), Err(ParseError::InvalidField(..))));
        // A bad @timestamp with a good created_at still parses.
        let n = parse(r#"{"action":"a.b","@timestamp":"x","created_at":1711431195806}"#).unwrap();
        assert_eq!(n.use_.time.timestamp_millis(), 1711431195806);
    }

    #[test]
    fn required_fields_and_wrong_types() {
        assert_eq!(
            parse(r#"{"@timestamp":1}"#).unwrap_err(),
            ParseError::MissingField("action")
        );
        assert_eq!(
            parse(r#"{"action":"repo.create"}"#).unwrap_err(),
            ParseError::MissingField("@timestamp")
        );
        assert!(matches!(parse("[1,2]"), Err(ParseError::NotARecord(_))));
        assert!(matches!(parse("\"x\""), Err(ParseError::NotARecord(_))));
        assert!(matches!(parse("{"), Err(ParseError::InvalidJson(_))));
        // Wrong types in opportunistic fields do not reject the record.
        let n = parse(
            r#"{"action":"git.clone","created_at":1711431195806,"actor":["x"],"org":[],"actor_location":"US","repositories_added_names":{"a":1},"token_id":{"x":1},"status_code":"abc"}"#,
        )
        .unwrap();
        assert_eq!(n.use_.principal.kind, PrincipalKind::Unknown);
        assert!(n.use_.credential.is_none());
        assert!(n.use_.outcome.success);
    }

    #[test]
    fn event_id_without_document_id_is_a_stable_fingerprint() {
        let rec = r#"{"actor":"a","org":"o","action":"org.add_member","created_at":1583365350878,"user":"u"}"#;
        let a = parse(rec).unwrap().use_.event_id;
        assert_eq!(a, parse(rec).unwrap().use_.event_id);
        assert!(a.starts_with("sha256:"));
    }

    #[test]
    fn kinds_of_access_types() {
        for (t, k) in [
            (
                "Personal access token (classic)",
                CredentialKind::GithubClassicPat,
            ),
            (
                "Fine-grained personal access token",
                CredentialKind::GithubFineGrainedPat,
            ),
            (
                "GitHub App server-to-server token",
                CredentialKind::GithubAppToken,
            ),
            (
                "GitHub App user-to-server token",
                CredentialKind::GithubAppToken,
            ),
            ("OAuth access token", CredentialKind::GithubOauthToken),
            ("SSH key", CredentialKind::Unknown),
        ] {
            assert_eq!(kind_of(Some(t)), k, "{t}");
        }
        assert_eq!(kind_of(None), CredentialKind::Unknown);
    }

    #[test]
    fn app_server_token_with_zero_token_id() {
        let n = parse(r#"{"@timestamp":1713596669109,"_document_id":"d","action":"git.push","actor":"github-actions[bot]","actor_id":41898282,"hashed_token":"EJmt=","org":"forest-town","programmatic_access_type":"GitHub App server-to-server token","repo":"forest-town/r","token_id":0,"user":"","user_id":0}"#).unwrap();
        // token_id 0 means none: the hash names the token.
        let c = n.use_.credential.unwrap();
        assert_eq!(c.id.as_str(), "EJmt=");
        assert_eq!(c.kind, CredentialKind::GithubAppToken);
        assert_eq!(n.use_.principal.kind, PrincipalKind::ServicePrincipal);
        assert_eq!(n.use_.operation.read_only, Some(false));
        // token_id 0 alone is no credential.
        let n = parse(r#"{"@timestamp":1,"action":"git.fetch","token_id":0}"#).unwrap();
        assert!(n.use_.credential.is_none());
    }

    #[test]
    fn repo_from_url_path() {
        assert_eq!(
            repo_from_path("/repos/acme/api/pulls?page=2").as_deref(),
            Some("acme/api")
        );
        assert_eq!(
            repo_from_path("/api/v3/repos/acme/api").as_deref(),
            Some("acme/api")
        );
        assert_eq!(repo_from_path("/repos/acme"), None);
        assert_eq!(repo_from_path("/orgs/acme/repos"), None);
    }
}
