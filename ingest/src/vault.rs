//! HashiCorp Vault / OpenBao audit devices (`file`, `socket`, `syslog`): one JSON
//! object per line, as the device writes it (no envelope).
//!
//! Vault logs every call twice: a `request` entry when the call arrives and a
//! `response` entry when it returns, both carrying the same `request.id`. Each entry
//! becomes one [`Normalized`] with [`Half::Request`] / [`Half::Response`] keyed by
//! that id (and `event_id` = `request.id` on both), so
//! [`join_request_response`](crate::join_request_response) can fold a request into
//! its response. Entries without a `request.id` (help requests, calls Vault makes to
//! itself during setup) are whole records with a content-hash id (`sha256:…`).
//!
//! Field mapping (entries of type `request` / `response`):
//!
//! | CredentialUse | audit entry |
//! |---|---|
//! | `event_id` | `request.id` |
//! | `time` | `time` |
//! | `credential.id` | `auth.accessor` (else `request.client_token_accessor`; a token with no accessor, a batch token or one that failed lookup, is named by its HMAC'd `client_token`) |
//! | `credential.kind` | `auth.token_type`: `service` → vault-service-token, `batch` → vault-batch-token, else unknown |
//! | `credential.issuer` | `request.namespace.id` (else `vault`) |
//! | `principal` | kind `user`, `name` = `auth.display_name` (the name to bind in the inventory: `token-<name>`, `userpass-<user>`, `oidc-<…>`), `id` = `auth.entity_id`, `account` = namespace id |
//! | `session.created_at` | `auth.token_issue_time` (for a login, the entry's time) |
//! | `client.source_ip` | `request.remote_address` |
//! | `client.user_agent` | `request.headers.user-agent`, when the device is told to log it and it is not HMAC'd |
//! | `operation` | service `vault`, name = `request.operation` (`read`, `list`, `create`, `update`, `delete`, `patch`, `help`…), read-only for `read`, `list`, `help` |
//! | `resources` | `[request.path]`, prefixed with `request.namespace.path` outside the root namespace |
//! | `outcome` | failure when `error` is non-empty; `error_code` is the error text, with Vault's `N errors occurred: * …` wrapper removed (`permission denied`) |
//!
//! So an agent scope for Vault reads `actions = ["vault:read", "vault:list"]`,
//! `resources = ["secret/data/app/*"]`.
//!
//! A login (a response entry of any `auth/<mount>/…` call outside `auth/token/` that
//! carries `response.auth`: `auth/userpass/login/<user>`, `auth/oidc/oidc/callback`…)
//! is the first use of the token it issues: its credential, principal and session
//! come from `response.auth`, whatever token the client happened to send along.
//!
//! Lineage facts, from successful `response` entries only:
//! - `response.auth` naming a token other than the caller's ⇒ `credential-issued`:
//!   child = `response.auth.accessor` (or its HMAC'd client token), `issued_to` =
//!   `response.auth.display_name`, method `other`; the parent is the caller's token
//!   for `auth/token/create*` and none for logins (`auth/<method>/login`, OIDC
//!   callbacks) and anything else.
//! - `auth/token/revoke-accessor` ⇒ `credential-status-changed` `Revoked` for
//!   `request.data.accessor` (HMAC'd with the same key, so it equals the accessor
//!   seen in `auth.accessor`); `auth/token/revoke-self` ⇒ the caller's token;
//!   `auth/token/revoke` and `revoke-orphan` ⇒ the token named by `request.data.token`
//!   (its HMAC: the id a use of that token carries once its accessor is gone).
//!
//! Vault Enterprise KMIP entries (`kmip-request` / `kmip-response`) are mapped too:
//! the credential is the client's TLS certificate (`kmip-client-cert:<serial>`,
//! kind unknown), the operation is service `kmip` and the KMIP operation name
//! (`kmip:Get`, `kmip:DiscoverVersions`), resources are the `UniqueIdentifier`s of the
//! managed objects, and a non-zero `ResultStatus` is a failure whose error code is the
//! KMIP result reason (`Permission Denied`; `Operation Pending` counts as accepted).
//! KMIP entries carry no request id: they are matched request ↔ response by client
//! certificate, remote address, operation and `UniqueBatchItemID`, when present.
//!
//! Secrets: the audit device HMACs tokens and request/response values by default.
//! Nothing but identifiers is kept: HMAC'd values (`hmac-sha256:…`) are opaque ids;
//! a raw token (devices with `log_raw = true`) is only ever kept as a
//! [`fingerprint`]. Accessors are kept as logged
//! (HMAC'd by default, raw with `hmac_accessor = false`): they are not secrets.

use chrono::{DateTime, Utc};
use lineage_core::secret::fingerprint;
use lineage_core::{
    ClientHints, CredentialId, CredentialKind, CredentialRef, CredentialUse, FactKind,
    IssuanceMethod, LineageFact, Operation, Outcome, Principal, PrincipalKind, Provenance,
    SessionContext, Source,
};
use serde::Deserialize;
use serde_json::Value;
use smol_str::SmolStr;

use crate::cloudtrail::mcp_server_from_user_agent;
use crate::lenient::{LenientObject, LenientStr};
use crate::{Half, Normalized, ParseError, SourceParser};

/// The Vault / OpenBao audit-device parser.
#[derive(Debug, Default, Clone, Copy)]
pub struct VaultParser;

#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(borrow, default)]
    time: LenientStr<'a>,
    #[serde(rename = "type", borrow, default)]
    kind: LenientStr<'a>,
    #[serde(borrow, default)]
    auth: LenientObject<RawAuth<'a>>,
    #[serde(borrow, default)]
    request: Option<LenientObject<RawRequest<'a>>>,
    #[serde(borrow, default)]
    response: LenientObject<RawResponse<'a>>,
    #[serde(borrow, default)]
    error: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawAuth<'a> {
    #[serde(borrow, default)]
    client_token: LenientStr<'a>,
    #[serde(borrow, default)]
    accessor: LenientStr<'a>,
    #[serde(borrow, default)]
    display_name: LenientStr<'a>,
    #[serde(borrow, default)]
    entity_id: LenientStr<'a>,
    #[serde(borrow, default)]
    token_type: LenientStr<'a>,
    #[serde(borrow, default)]
    token_issue_time: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawRequest<'a> {
    #[serde(borrow, default)]
    id: LenientStr<'a>,
    #[serde(borrow, default)]
    operation: LenientStr<'a>,
    #[serde(borrow, default)]
    client_token: LenientStr<'a>,
    #[serde(borrow, default)]
    client_token_accessor: LenientStr<'a>,
    #[serde(borrow, default)]
    namespace: LenientObject<RawNamespace<'a>>,
    #[serde(borrow, default)]
    path: LenientStr<'a>,
    #[serde(borrow, default)]
    data: LenientObject<RawRequestData<'a>>,
    #[serde(borrow, default)]
    remote_address: LenientStr<'a>,
    #[serde(borrow, default)]
    headers: LenientObject<RawHeaders<'a>>,
    #[serde(borrow, default)]
    client_certificate_serial_number: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawNamespace<'a> {
    #[serde(borrow, default)]
    id: LenientStr<'a>,
    #[serde(borrow, default)]
    path: LenientStr<'a>,
}

/// The request body fields read for revocations (values are HMAC'd by default).
#[derive(Deserialize, Default)]
struct RawRequestData<'a> {
    #[serde(borrow, default)]
    accessor: LenientStr<'a>,
    #[serde(borrow, default)]
    token: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawHeaders<'a> {
    #[serde(rename = "user-agent", borrow, default)]
    user_agent: StrOrList<'a>,
}

/// A header value: Vault logs a list of strings; tolerate a bare string or anything else.
#[derive(Default)]
struct StrOrList<'a>(Option<LenientStr<'a>>);

impl<'de: 'a, 'a> Deserialize<'de> for StrOrList<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either<'a> {
            Many(Vec<LenientStr<'a>>),
            One(#[serde(borrow)] LenientStr<'a>),
        }
        Ok(match Either::deserialize(d)? {
            Either::Many(v) => StrOrList(v.into_iter().find(|s| s.get().is_some())),
            Either::One(s) => StrOrList(Some(s)),
        })
    }
}

impl StrOrList<'_> {
    fn get(&self) -> Option<&str> {
        self.0.as_ref().and_then(|s| s.get())
    }
}

#[derive(Deserialize, Default)]
struct RawResponse<'a> {
    #[serde(borrow, default)]
    auth: LenientObject<RawAuth<'a>>,
}

fn s(v: &LenientStr<'_>) -> Option<SmolStr> {
    v.get().map(SmolStr::new)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    crate::time::parse_time(text)
}

fn is_hmac(v: &str) -> bool {
    v.starts_with("hmac-sha256:")
}

/// A token named by its client-token field: the HMAC as logged, or the
/// fingerprint of a raw token (never the token itself).
fn token_id(token: &str) -> CredentialId {
    if is_hmac(token) {
        CredentialId::new(token)
    } else {
        CredentialId::new(fingerprint(token))
    }
}

fn token_kind(token_type: Option<&str>) -> CredentialKind {
    match token_type {
        Some("service") => CredentialKind::VaultServiceToken,
        Some("batch") => CredentialKind::VaultBatchToken,
        _ => CredentialKind::Unknown,
    }
}

/// The credential an `auth` block names: its accessor, else the (HMAC'd) token.
fn credential_of(
    auth: Option<&RawAuth<'_>>,
    req: &RawRequest<'_>,
    issuer: &SmolStr,
) -> Option<CredentialRef> {
    let accessor = auth
        .and_then(|a| a.accessor.get())
        .or(req.client_token_accessor.get());
    let id = match accessor {
        Some(a) => CredentialId::new(a),
        None => token_id(
            auth.and_then(|a| a.client_token.get())
                .or(req.client_token.get())?,
        ),
    };
    Some(CredentialRef {
        kind: token_kind(auth.and_then(|a| a.token_type.get())),
        id,
        issuer: Some(issuer.clone()),
    })
}

fn principal_of(auth: Option<&RawAuth<'_>>, namespace: Option<&SmolStr>) -> Principal {
    let Some(auth) = auth else {
        return Principal::unknown();
    };
    let name = s(&auth.display_name);
    let id = s(&auth.entity_id);
    if name.is_none() && id.is_none() {
        return Principal::unknown();
    }
    Principal {
        kind: PrincipalKind::User,
        id,
        name,
        arn: None,
        account: namespace.cloned(),
    }
}

/// Vault wraps errors as `1 error occurred:\n\t* permission denied\n\n`; keep the inner text.
fn error_code(text: &str) -> SmolStr {
    let text = text.trim();
    let first = text.lines().next().unwrap_or("");
    if first.ends_with("occurred:") {
        let inner: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("* "))
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        if !inner.is_empty() {
            return SmolStr::new(inner.join("; "));
        }
    }
    SmolStr::new(text)
}

impl SourceParser for VaultParser {
    fn source(&self) -> Source {
        Source::Vault
    }

    fn envelope_keys(&self) -> &'static [&'static str] {
        &[]
    }

    fn parse_record(&self, bytes: &[u8], provenance: Provenance) -> Result<Normalized, ParseError> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(ParseError::NotARecord(
                "Vault audit entry is not a JSON object".into(),
            ));
        }
        let raw: RawEntry<'_> = serde_json::from_slice(bytes).map_err(|e| {
            if e.classify() == serde_json::error::Category::Data {
                ParseError::NotARecord(format!("Vault audit entry has an unusable shape: {e}"))
            } else {
                ParseError::InvalidJson(e.to_string())
            }
        })?;
        normalize(raw, bytes, provenance)
    }
}

fn normalize(
    raw: RawEntry<'_>,
    bytes: &[u8],
    provenance: Provenance,
) -> Result<Normalized, ParseError> {
    let kind = raw.kind.get().ok_or(ParseError::MissingField("type"))?;
    let time_text = raw.time.get().ok_or(ParseError::MissingField("time"))?;
    let time = parse_time(time_text).ok_or_else(|| {
        ParseError::InvalidField("time", format!("`{time_text}` is not an RFC 3339 time"))
    })?;
    let request = match raw.request {
        Some(LenientObject(Some(r))) => r,
        Some(LenientObject(None)) => {
            return Err(ParseError::InvalidField(
                "request",
                "is not an object".into(),
            ))
        }
        None => return Err(ParseError::MissingField("request")),
    };
    let is_response = match kind {
        "request" => false,
        "response" => true,
        "kmip-request" | "kmip-response" => {
            return kmip(bytes, &request, kind == "kmip-response", time, provenance)
        }
        other => {
            return Err(ParseError::InvalidField(
                "type",
                format!("`{other}` is not a Vault audit entry type (request, response, kmip-request, kmip-response)"),
            ))
        }
    };
    let operation_name = request
        .operation
        .get()
        .ok_or(ParseError::MissingField("request.operation"))?;
    let path = request.path.get().unwrap_or("");

    let namespace = request.namespace.0.as_ref();
    let namespace_id = namespace.and_then(|n| s(&n.id));
    let issuer = namespace_id
        .clone()
        .unwrap_or_else(|| SmolStr::new_static("vault"));
    let response = raw.response.0.unwrap_or_default();
    let issued = response
        .auth
        .0
        .as_ref()
        .filter(|a| a.accessor.get().is_some() || a.client_token.get().is_some());

    // A login (a call to an auth method other than the token store that returns a
    // token) is made without a token: it is the first use of the token it issues.
    let login = issued.filter(|_| path.starts_with("auth/") && !path.starts_with("auth/token/"));
    let caller_auth = match login {
        Some(new) => Some(new),
        None => raw.auth.0.as_ref(),
    };
    let credential = match login {
        Some(new) => credential_of(Some(new), &RawRequest::default(), &issuer),
        None => credential_of(caller_auth, &request, &issuer),
    };
    let principal = principal_of(caller_auth, namespace_id.as_ref());

    let outcome = match raw.error.get().map(str::trim).filter(|e| !e.is_empty()) {
        Some(e) => Outcome {
            success: false,
            error_code: Some(error_code(e)),
        },
        None => Outcome::ok(),
    };

    let (event_id, half) = match request.id.get() {
        Some(id) => {
            let id = SmolStr::new(id);
            let half = if is_response {
                Half::Response(id.clone())
            } else {
                Half::Request(id.clone())
            };
            (id, Some(half))
        }
        None => (SmolStr::new(content_id(bytes)), None),
    };

    let resource = match namespace.and_then(|n| n.path.get()) {
        Some(ns) if !path.is_empty() => format!("{}/{path}", ns.trim_end_matches('/')),
        _ => path.to_owned(),
    };
    let user_agent = request
        .headers
        .0
        .as_ref()
        .and_then(|h| h.user_agent.get())
        .filter(|ua| !is_hmac(ua))
        .map(SmolStr::new);

    let facts = if is_response && outcome.success {
        facts_of(
            path,
            &event_id,
            time,
            credential.as_ref(),
            login.is_some(),
            &principal,
            &request,
            issued,
            &issuer,
        )
    } else {
        Vec::new()
    };

    let use_ = CredentialUse {
        source: Source::Vault,
        event_id,
        time,
        credential,
        principal,
        session: SessionContext {
            // A login's token is created by the call itself.
            created_at: caller_auth
                .and_then(|a| a.token_issue_time.get())
                .and_then(parse_time)
                .or(login.map(|_| time)),
            ..SessionContext::default()
        },
        client: ClientHints {
            mcp_server: user_agent.as_deref().and_then(mcp_server_from_user_agent),
            user_agent,
            source_ip: s(&request.remote_address),
            client_app: None,
        },
        operation: Operation {
            service: SmolStr::new_static("vault"),
            name: SmolStr::new(operation_name),
            read_only: Some(matches!(operation_name, "read" | "list" | "help")),
        },
        resources: if resource.is_empty() {
            Vec::new()
        } else {
            vec![SmolStr::new(resource)]
        },
        outcome,
        region: None,
        provenance,
    };
    Ok(Normalized {
        use_,
        facts,
        half,
        rule_hits: Vec::new(),
    })
}

/// A stable id for an entry that has none: the fingerprint of its bytes.
fn content_id(bytes: &[u8]) -> String {
    fingerprint(&String::from_utf8_lossy(bytes))
}

#[allow(clippy::too_many_arguments)]
fn facts_of(
    path: &str,
    event_id: &SmolStr,
    time: DateTime<Utc>,
    caller: Option<&CredentialRef>,
    login: bool,
    principal: &Principal,
    request: &RawRequest<'_>,
    issued: Option<&RawAuth<'_>>,
    issuer: &SmolStr,
) -> Vec<LineageFact> {
    let fact = |kind| LineageFact {
        time,
        source: Source::Vault,
        event_id: event_id.clone(),
        kind,
    };
    let mut facts = Vec::new();
    if let Some(new) = issued {
        let child = credential_of(Some(new), &RawRequest::default(), issuer);
        // A renewal returns the caller's own token: nothing new.
        if let Some(child) = child.filter(|c| login || !matches!(caller, Some(p) if p.id == c.id)) {
            let parent = if !login && path.starts_with("auth/token/create") {
                caller.cloned()
            } else {
                None
            };
            facts.push(fact(FactKind::CredentialIssued {
                parent,
                child,
                issued_by: principal.clone(),
                issued_to: s(&new.display_name),
                method: IssuanceMethod::Other,
                session_name: None,
                source_identity: None,
            }));
        }
    }
    let data = request.data.0.as_ref();
    let revoked = match path {
        "auth/token/revoke-accessor" => {
            data.and_then(|d| d.accessor.get()).map(|a| CredentialRef {
                kind: CredentialKind::Unknown,
                id: CredentialId::new(a),
                issuer: Some(issuer.clone()),
            })
        }
        "auth/token/revoke-self" => caller.cloned(),
        "auth/token/revoke" | "auth/token/revoke-orphan" => {
            data.and_then(|d| d.token.get()).map(|t| CredentialRef {
                kind: CredentialKind::Unknown,
                id: token_id(t),
                issuer: Some(issuer.clone()),
            })
        }
        _ => None,
    };
    if let Some(credential) = revoked {
        facts.push(fact(FactKind::CredentialStatusChanged {
            credential,
            status: SmolStr::new_static("Revoked"),
            changed_by: principal.clone(),
        }));
    }
    facts
}

// ---------------------------------------------------------------------------------
// KMIP entries (Vault Enterprise KMIP secrets engine)

/// Maps a `kmip-request` / `kmip-response` entry. Its body is KMIP TTLV rendered as
/// JSON (`{"tag", "type", "value"}` nodes), read as a [`Value`] tree.
fn kmip(
    bytes: &[u8],
    request: &RawRequest<'_>,
    is_response: bool,
    time: DateTime<Utc>,
    provenance: Provenance,
) -> Result<Normalized, ParseError> {
    let doc: Value =
        serde_json::from_slice(bytes).map_err(|e| ParseError::InvalidJson(e.to_string()))?;
    let data = &doc["request"]["data"];
    let req_msg = &data["kmip_request"];
    let resp_msg = &doc["response"]["data"]["kmip_response"];
    if req_msg.is_null() && resp_msg.is_null() {
        return Err(ParseError::MissingField("request.data.kmip_request"));
    }
    let op_code = find_tag(req_msg, "Operation")
        .or_else(|| find_tag(resp_msg, "Operation"))
        .and_then(enum_value);
    let op_name = op_code.map_or_else(
        || SmolStr::new_static("Unknown"),
        |c| {
            kmip_operation(c)
                .map_or_else(|| SmolStr::new(format!("0x{c:08x}")), SmolStr::new_static)
        },
    );
    let read_only = op_code.and_then(kmip_operation).map(|n| {
        matches!(
            n,
            "Locate"
                | "Check"
                | "Get"
                | "GetAttributes"
                | "GetAttributeList"
                | "GetUsageAllocation"
                | "Query"
                | "DiscoverVersions"
                | "Poll"
                | "Validate"
                | "Encrypt"
                | "Decrypt"
                | "Sign"
                | "SignatureVerify"
                | "MAC"
                | "MACVerify"
                | "RNGRetrieve"
                | "Hash"
        )
    });
    let outcome = if is_response {
        match find_tag(resp_msg, "ResultStatus").and_then(enum_value) {
            // Success, or Operation Pending (an asynchronous operation accepted).
            Some(0) | Some(2) | None => Outcome::ok(),
            Some(status) => {
                let reason = find_tag(resp_msg, "ResultReason")
                    .and_then(enum_value)
                    .map(kmip_reason)
                    .unwrap_or_else(|| kmip_status(status));
                Outcome {
                    success: false,
                    error_code: Some(SmolStr::new(reason)),
                }
            }
        }
    } else {
        Outcome::ok()
    };
    let namespace_id = request.namespace.0.as_ref().and_then(|n| s(&n.id));
    let serial = request.client_certificate_serial_number.get();
    let credential = serial.map(|serial| CredentialRef {
        kind: CredentialKind::Unknown,
        id: CredentialId::new(format!("kmip-client-cert:{serial}")),
        issuer: Some(
            namespace_id
                .clone()
                .unwrap_or_else(|| SmolStr::new_static("vault")),
        ),
    });
    let remote = request.remote_address.get();
    let mut resources: Vec<SmolStr> = Vec::new();
    for msg in [req_msg, resp_msg] {
        collect_tag(msg, "UniqueIdentifier", &mut |v| {
            if let Some(text) = v.as_str().filter(|t| !t.is_empty()) {
                if !resources.iter().any(|r| r == text) {
                    resources.push(SmolStr::new(text));
                }
            }
        });
    }
    // No request id: a request and its response are matched by client, connection
    // and batch item id, when the client sent one.
    let batch_id = find_tag(req_msg, "UniqueBatchItemID")
        .or_else(|| find_tag(resp_msg, "UniqueBatchItemID"))
        .and_then(Value::as_str);
    let half = batch_id.map(|b| {
        let key = SmolStr::new(format!(
            "kmip-{}",
            fingerprint(&format!(
                "{}|{}|{b}|{}",
                serial.unwrap_or(""),
                remote.unwrap_or(""),
                op_code.unwrap_or(0)
            ))
        ));
        if is_response {
            Half::Response(key)
        } else {
            Half::Request(key)
        }
    });
    let event_id = SmolStr::new(format!("kmip-{}", content_id(bytes)));
    Ok(Normalized {
        use_: CredentialUse {
            source: Source::Vault,
            event_id,
            time,
            credential,
            principal: Principal::unknown(),
            session: SessionContext::default(),
            client: ClientHints {
                source_ip: remote.map(host_of).map(SmolStr::new),
                ..ClientHints::default()
            },
            operation: Operation {
                service: SmolStr::new_static("kmip"),
                name: op_name,
                read_only,
            },
            resources,
            outcome,
            region: None,
            provenance,
        },
        facts: Vec::new(),
        half,
        rule_hits: Vec::new(),
    })
}

/// `192.168.0.10:36776` → `192.168.0.10`, `[2001:db8::10]:36778` → `2001:db8::10`.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((host, port))
            if !host.contains(':')
                && !port.is_empty()
                && port.bytes().all(|b| b.is_ascii_digit()) =>
        {
            host
        }
        _ => addr,
    }
}

/// Calls `f` with the `value` of every TTLV node tagged `tag` (depth-limited).
fn collect_tag<'v>(v: &'v Value, tag: &str, f: &mut dyn FnMut(&'v Value)) {
    fn walk<'v>(v: &'v Value, tag: &str, depth: usize, f: &mut dyn FnMut(&'v Value)) {
        if depth > 64 {
            return;
        }
        match v {
            Value::Object(m) => {
                if m.get("tag").and_then(Value::as_str) == Some(tag) {
                    if let Some(value) = m.get("value") {
                        f(value);
                    }
                }
                if let Some(inner) = m.get("value") {
                    walk(inner, tag, depth + 1, f);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, tag, depth + 1, f)),
            _ => {}
        }
    }
    walk(v, tag, 0, f)
}

fn find_tag<'v>(v: &'v Value, tag: &str) -> Option<&'v Value> {
    let mut found = None;
    collect_tag(v, tag, &mut |x| {
        if found.is_none() {
            found = Some(x);
        }
    });
    found
}

/// A KMIP enumeration or integer as JSON renders it: `"0x0000000a"`, or a number.
fn enum_value(v: &Value) -> Option<u32> {
    match v {
        Value::String(t) => {
            let t = t.trim();
            match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => t.parse().ok(),
            }
        }
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
}

/// KMIP 1.4 / 2.x operation names, by enumeration value.
fn kmip_operation(code: u32) -> Option<&'static str> {
    const NAMES: [&str; 0x2B] = [
        "Create",
        "CreateKeyPair",
        "Register",
        "ReKey",
        "DeriveKey",
        "Certify",
        "ReCertify",
        "Locate",
        "Check",
        "Get",
        "GetAttributes",
        "GetAttributeList",
        "AddAttribute",
        "ModifyAttribute",
        "DeleteAttribute",
        "ObtainLease",
        "GetUsageAllocation",
        "Activate",
        "Revoke",
        "Destroy",
        "Archive",
        "Recover",
        "Validate",
        "Query",
        "Cancel",
        "Poll",
        "Notify",
        "Put",
        "ReKeyKeyPair",
        "DiscoverVersions",
        "Encrypt",
        "Decrypt",
        "Sign",
        "SignatureVerify",
        "MAC",
        "MACVerify",
        "RNGRetrieve",
        "RNGSeed",
        "Hash",
        "CreateSplitKey",
        "JoinSplitKey",
        "Import",
        "Export",
    ];
    let i = usize::try_from(code).ok()?.checked_sub(1)?;
    NAMES.get(i).copied()
}

fn kmip_status(code: u32) -> String {
    match code {
        1 => "Operation Failed".into(),
        2 => "Operation Pending".into(),
        3 => "Operation Undone".into(),
        c => format!("ResultStatus 0x{c:08x}"),
    }
}

fn kmip_reason(code: u32) -> String {
    let name = match code {
        0x01 => "Item Not Found",
        0x02 => "Response Too Large",
        0x03 => "Authentication Not Successful",
        0x04 => "Invalid Message",
        0x05 => "Operation Not Supported",
        0x06 => "Missing Data",
        0x07 => "Invalid Field",
        0x08 => "Feature Not Supported",
        0x09 => "Operation Canceled By Requester",
        0x0A => "Cryptographic Failure",
        0x0B => "Illegal Operation",
        0x0C => "Permission Denied",
        0x0D => "Object Archived",
        0x0E => "Index Out Of Bounds",
        0x0F => "Application Namespace Not Supported",
        0x10 => "Key Format Type Not Supported",
        0x11 => "Key Compression Type Not Supported",
        0x100 => "General Failure",
        c => return format!("ResultReason 0x{c:08x}"),
    };
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_lose_the_multierror_wrapper() {
        assert_eq!(
            error_code("1 error occurred:\n\t* permission denied\n\n"),
            "permission denied"
        );
        assert_eq!(error_code("2 errors occurred:\n\t* a\n\t* b\n\n"), "a; b");
        assert_eq!(error_code("permission denied"), "permission denied");
    }

    #[test]
    fn hosts_lose_their_port() {
        assert_eq!(host_of("192.168.0.10:36776"), "192.168.0.10");
        assert_eq!(host_of("[2001:db8::10]:36778"), "2001:db8::10");
        assert_eq!(host_of("2001:db8::10"), "2001:db8::10");
        assert_eq!(host_of("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn kmip_names() {
        assert_eq!(kmip_operation(0x0a), Some("Get"));
        assert_eq!(kmip_operation(0x1e), Some("DiscoverVersions"));
        assert_eq!(kmip_operation(0x2b), Some("Export"));
        assert_eq!(kmip_operation(0), None);
        assert_eq!(kmip_operation(0x2c), None);
        assert_eq!(kmip_reason(0x0c), "Permission Denied");
    }
}
