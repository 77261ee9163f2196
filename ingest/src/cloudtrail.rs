//! AWS CloudTrail: records from S3 delivery files (`{"Records":[…]}`), JSON lines,
//! EventBridge-free single events, all with the same record shape.
//!
//! Data-lake exports are read too: keys lower-cased (Athena/Glue: `eventid`,
//! `useridentity.accesskeyid`), `requestParameters`/`responseElements` written as
//! JSON text, times with a space and no zone (UTC). A record without `eventID` gets
//! `sha256:` + 16 hex of its bytes as its id, the rule of every source.
//!
//! Every record becomes a [`CredentialUse`]; issuance and key-status calls also
//! yield [`LineageFact`]s. Secret values (`secretAccessKey`, `sessionToken`) are
//! never deserialized: the typed structs below simply have no field for them, so
//! they cannot reach any output.

use chrono::{DateTime, Utc};
use lineage_core::secret::fingerprint;
use lineage_core::{
    ClientHints, CredentialId, CredentialKind, CredentialRef, CredentialUse, FactKind,
    IssuanceMethod, LineageFact, Operation, Outcome, Principal, PrincipalKind, Provenance,
    SessionContext, Source,
};
use serde::Deserialize;
use smol_str::SmolStr;

use crate::lenient::{LenientBool, LenientObject, LenientStr};
use crate::{Normalized, ParseError, SourceParser};

/// The CloudTrail parser.
#[derive(Debug, Default, Clone, Copy)]
pub struct CloudTrailParser;

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(rename = "eventID", alias = "eventid", borrow, default)]
    event_id: LenientStr<'a>,
    #[serde(rename = "eventTime", alias = "eventtime", borrow, default)]
    event_time: LenientStr<'a>,
    #[serde(rename = "eventSource", alias = "eventsource", borrow, default)]
    event_source: LenientStr<'a>,
    #[serde(rename = "eventName", alias = "eventname", borrow, default)]
    event_name: LenientStr<'a>,
    #[serde(rename = "awsRegion", alias = "awsregion", borrow, default)]
    aws_region: LenientStr<'a>,
    #[serde(rename = "sourceIPAddress", alias = "sourceipaddress", borrow, default)]
    source_ip: LenientStr<'a>,
    #[serde(rename = "userAgent", alias = "useragent", borrow, default)]
    user_agent: LenientStr<'a>,
    #[serde(rename = "errorCode", alias = "errorcode", borrow, default)]
    error_code: LenientStr<'a>,
    #[serde(rename = "errorMessage", alias = "errormessage", borrow, default)]
    error_message: LenientStr<'a>,
    #[serde(rename = "readOnly", alias = "readonly", default)]
    read_only: LenientBool,
    #[serde(
        rename = "recipientAccountId",
        alias = "recipientaccountid",
        borrow,
        default
    )]
    recipient_account: LenientStr<'a>,
    #[serde(rename = "userIdentity", alias = "useridentity", borrow, default)]
    user_identity: Option<LenientObject<RawUserIdentity<'a>>>,
    #[serde(
        rename = "requestParameters",
        alias = "requestparameters",
        borrow,
        default
    )]
    request: LenientObject<RawRequest<'a>>,
    #[serde(
        rename = "responseElements",
        alias = "responseelements",
        borrow,
        default
    )]
    response: LenientObject<RawResponse<'a>>,
    #[serde(borrow, default)]
    resources: LenientObjectList<RawResource<'a>>,
}

/// A list that tolerates non-list values and non-object entries.
struct LenientObjectList<T>(Vec<T>);

impl<T> Default for LenientObjectList<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for LenientObjectList<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match Option::<Vec<LenientObject<T>>>::deserialize(d) {
            Ok(v) => Ok(Self(
                v.unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| o.0)
                    .collect(),
            )),
            Err(e) => Err(e),
        }
    }
}

#[derive(Deserialize, Default)]
struct RawUserIdentity<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: LenientStr<'a>,
    #[serde(rename = "principalId", alias = "principalid", borrow, default)]
    principal_id: LenientStr<'a>,
    #[serde(borrow, default)]
    arn: LenientStr<'a>,
    #[serde(rename = "accountId", alias = "accountid", borrow, default)]
    account_id: LenientStr<'a>,
    #[serde(rename = "accessKeyId", alias = "accesskeyid", borrow, default)]
    access_key_id: LenientStr<'a>,
    #[serde(rename = "userName", alias = "username", borrow, default)]
    user_name: LenientStr<'a>,
    #[serde(rename = "invokedBy", alias = "invokedby", borrow, default)]
    invoked_by: LenientStr<'a>,
    #[serde(rename = "sessionContext", alias = "sessioncontext", borrow, default)]
    session_context: LenientObject<RawSessionContext<'a>>,
    #[serde(rename = "onBehalfOf", alias = "onbehalfof", borrow, default)]
    on_behalf_of: LenientObject<RawOnBehalfOf<'a>>,
}

#[derive(Deserialize, Default)]
struct RawOnBehalfOf<'a> {
    #[serde(rename = "userId", alias = "userid", borrow, default)]
    user_id: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawSessionContext<'a> {
    #[serde(rename = "sessionIssuer", alias = "sessionissuer", borrow, default)]
    session_issuer: LenientObject<RawSessionIssuer<'a>>,
    #[serde(borrow, default)]
    attributes: LenientObject<RawSessionAttributes<'a>>,
    #[serde(rename = "sourceIdentity", alias = "sourceidentity", borrow, default)]
    source_identity: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawSessionIssuer<'a> {
    #[serde(borrow, default)]
    arn: LenientStr<'a>,
    #[serde(rename = "userName", alias = "username", borrow, default)]
    user_name: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawSessionAttributes<'a> {
    #[serde(rename = "creationDate", alias = "creationdate", borrow, default)]
    creation_date: LenientStr<'a>,
    #[serde(rename = "mfaAuthenticated", alias = "mfaauthenticated", default)]
    mfa_authenticated: LenientBool,
}

#[derive(Deserialize, Default)]
struct RawRequest<'a> {
    #[serde(rename = "roleArn", alias = "rolearn", borrow, default)]
    role_arn: LenientStr<'a>,
    #[serde(rename = "roleSessionName", alias = "rolesessionname", borrow, default)]
    role_session_name: LenientStr<'a>,
    #[serde(rename = "sourceIdentity", alias = "sourceidentity", borrow, default)]
    source_identity: LenientStr<'a>,
    #[serde(rename = "userName", alias = "username", borrow, default)]
    user_name: LenientStr<'a>,
    #[serde(rename = "roleName", alias = "rolename", borrow, default)]
    role_name: LenientStr<'a>,
    #[serde(rename = "accessKeyId", alias = "accesskeyid", borrow, default)]
    access_key_id: LenientStr<'a>,
    #[serde(borrow, default)]
    status: LenientStr<'a>,
    #[serde(rename = "bucketName", alias = "bucketname", borrow, default)]
    bucket_name: LenientStr<'a>,
    #[serde(borrow, default)]
    key: LenientStr<'a>,
    #[serde(rename = "secretId", alias = "secretid", borrow, default)]
    secret_id: LenientStr<'a>,
    #[serde(borrow, default)]
    name: LenientStr<'a>,
    #[serde(rename = "functionName", alias = "functionname", borrow, default)]
    function_name: LenientStr<'a>,
    #[serde(rename = "instanceId", alias = "instanceid", borrow, default)]
    instance_id: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawResponse<'a> {
    #[serde(borrow, default)]
    credentials: LenientObject<RawIssuedCredentials<'a>>,
    #[serde(rename = "accessKey", alias = "accesskey", borrow, default)]
    access_key: LenientObject<RawAccessKey<'a>>,
    #[serde(rename = "assumedRoleUser", alias = "assumedroleuser", borrow, default)]
    assumed_role_user: LenientObject<RawArnHolder<'a>>,
    #[serde(rename = "federatedUser", alias = "federateduser", borrow, default)]
    federated_user: LenientObject<RawArnHolder<'a>>,
    #[serde(rename = "sourceIdentity", alias = "sourceidentity", borrow, default)]
    source_identity: LenientStr<'a>,
    /// `ConsoleLogin` events: `Success` or `Failure` (a failed console sign-in has no
    /// `errorCode`, only this and `errorMessage`).
    #[serde(rename = "ConsoleLogin", alias = "consolelogin", borrow, default)]
    console_login: LenientStr<'a>,
}

/// Only the key id: `secretAccessKey` and `sessionToken` have no field here on purpose.
#[derive(Deserialize, Default)]
struct RawIssuedCredentials<'a> {
    #[serde(rename = "accessKeyId", alias = "accesskeyid", borrow, default)]
    access_key_id: LenientStr<'a>,
}

/// Only the key id and owner: `secretAccessKey` has no field here on purpose.
#[derive(Deserialize, Default)]
struct RawAccessKey<'a> {
    #[serde(rename = "accessKeyId", alias = "accesskeyid", borrow, default)]
    access_key_id: LenientStr<'a>,
    #[serde(rename = "userName", alias = "username", borrow, default)]
    user_name: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawArnHolder<'a> {
    #[serde(borrow, default)]
    arn: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawResource<'a> {
    #[serde(rename = "ARN", alias = "arn", borrow, default)]
    arn: LenientStr<'a>,
}

fn s(v: &LenientStr<'_>) -> Option<SmolStr> {
    v.get().map(SmolStr::new)
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    utc_seconds(text).or_else(|| crate::time::parse_time(text))
}

/// The form CloudTrail writes every `eventTime` in, `YYYY-MM-DDTHH:MM:SSZ`, read
/// by hand: chrono's general RFC 3339 parser was 1.5% of the parse thread. Any
/// other form (offsets, fractions, lower-case `t`/`z`, leap seconds) returns `None`
/// and goes to chrono, so the answer is always chrono's.
fn utc_seconds(text: &str) -> Option<DateTime<Utc>> {
    let b: &[u8; 20] = text.as_bytes().try_into().ok()?;
    if b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
        || b[19] != b'Z'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let date = chrono::NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let time = date.and_hms_opt(num(11..13)?, num(14..16)?, num(17..19)?)?;
    Some(time.and_utc())
}

impl SourceParser for CloudTrailParser {
    fn source(&self) -> Source {
        Source::CloudTrail
    }

    fn envelope_keys(&self) -> &'static [&'static str] {
        &["Records"]
    }

    fn parse_record(&self, bytes: &[u8], provenance: Provenance) -> Result<Normalized, ParseError> {
        let raw: RawEvent<'_> = serde_json::from_slice(bytes).map_err(|e| {
            if e.to_string().starts_with("duplicate field") {
                // Lake exports lower-case the keys; both spellings are one field.
                ParseError::NotARecord(format!(
                    "CloudTrail record names a field twice (`eventID` and `eventid` are the \
                     same field, whatever the letter case): {e}"
                ))
            } else if e.classify() == serde_json::error::Category::Data {
                ParseError::NotARecord(format!("CloudTrail record is not a JSON object: {e}"))
            } else {
                ParseError::InvalidJson(e.to_string())
            }
        })?;
        normalize(raw, provenance, bytes)
    }

    fn parse_record_prefix(
        &self,
        bytes: &[u8],
        provenance: Provenance,
    ) -> Option<(Result<Normalized, ParseError>, usize)> {
        first_record(
            serde_json::Deserializer::from_slice(bytes),
            bytes,
            provenance,
        )
    }

    fn parse_record_prefix_str(
        &self,
        text: &str,
        provenance: Provenance,
    ) -> Option<(Result<Normalized, ParseError>, usize)> {
        // From text: serde_json then skips the UTF-8 check of every string.
        first_record(
            serde_json::Deserializer::from_str(text),
            text.as_bytes(),
            provenance,
        )
    }
}

/// The record at the start of `de`'s input (`input`) with its length: a stream
/// deserializer stops after one value and says where it ended. `None` when it does
/// not deserialize.
fn first_record<'de, R: serde_json::de::Read<'de>>(
    de: serde_json::Deserializer<R>,
    input: &[u8],
    provenance: Provenance,
) -> Option<(Result<Normalized, ParseError>, usize)> {
    let mut stream = de.into_iter::<RawEvent<'de>>();
    let raw = stream.next()?.ok()?;
    let len = stream.byte_offset();
    Some((normalize(raw, provenance, &input[..len]), len))
}

/// `bytes`: the record as read, for the content-hash id of a record without `eventID`.
fn normalize(
    raw: RawEvent<'_>,
    provenance: Provenance,
    bytes: &[u8],
) -> Result<Normalized, ParseError> {
    // One rule for every source: a record without its own id gets a content hash
    // (`sha256:` + 16 hex of its bytes as read), so replays give it the same id.
    let hashed_id;
    let event_id = match raw.event_id.get() {
        Some(id) => id,
        None => {
            hashed_id = fingerprint(&String::from_utf8_lossy(bytes));
            hashed_id.as_str()
        }
    };
    let time_text = raw
        .event_time
        .get()
        .ok_or(ParseError::MissingField("eventTime"))?;
    let time = parse_time(time_text).ok_or_else(|| {
        ParseError::InvalidField(
            "eventTime",
            format!("`{time_text}` is not an RFC 3339 time"),
        )
    })?;
    let event_source = raw
        .event_source
        .get()
        .ok_or(ParseError::MissingField("eventSource"))?;
    let event_name = raw
        .event_name
        .get()
        .ok_or(ParseError::MissingField("eventName"))?;
    let identity = match raw.user_identity {
        Some(LenientObject(Some(ui))) => ui,
        Some(LenientObject(None)) => {
            return Err(ParseError::InvalidField(
                "userIdentity",
                "is not an object".into(),
            ))
        }
        None => return Err(ParseError::MissingField("userIdentity")),
    };
    let request = raw.request.0.unwrap_or_default();
    let response = raw.response.0.unwrap_or_default();
    let region = raw.aws_region.get();
    let account = identity
        .account_id
        .get()
        .or(raw.recipient_account.get())
        .map(SmolStr::new);

    let principal = principal_of(&identity);
    let credential = identity.access_key_id.get().map(|key| CredentialRef {
        kind: CredentialKind::from_aws_key_id(key),
        id: CredentialId::new(key),
        issuer: account.clone(),
    });
    let session = session_of(&identity);
    let service = event_source
        .strip_suffix(".amazonaws.com")
        .unwrap_or(event_source);
    let operation = Operation {
        service: SmolStr::new(service),
        name: SmolStr::new(event_name),
        read_only: raw.read_only.0,
    };
    // A failure is an `errorCode`, or a console sign-in whose response says
    // `Failure` (CloudTrail writes no `errorCode` for those, only `errorMessage`).
    let console_failure = response
        .console_login
        .get()
        .is_some_and(|v| v.eq_ignore_ascii_case("failure"));
    let outcome = match raw.error_code.get() {
        Some(code) => Outcome {
            success: false,
            error_code: Some(SmolStr::new(code)),
        },
        None if console_failure => Outcome {
            success: false,
            error_code: Some(SmolStr::new(
                raw.error_message.get().unwrap_or("ConsoleLogin Failure"),
            )),
        },
        None => Outcome::ok(),
    };
    let resources = resources_of(
        &raw.resources.0,
        &request,
        service,
        region,
        account.as_deref(),
    );
    let client = ClientHints {
        user_agent: s(&raw.user_agent),
        source_ip: s(&raw.source_ip),
        client_app: identity.invoked_by.get().map(SmolStr::new),
        mcp_server: raw.user_agent.get().and_then(mcp_server_from_user_agent),
    };

    let facts = if outcome.success {
        facts_of(
            event_name,
            event_id,
            time,
            credential.as_ref(),
            &principal,
            &request,
            &response,
            account.as_ref(),
        )
    } else {
        Vec::new()
    };

    Ok(Normalized::whole(
        CredentialUse {
            source: Source::CloudTrail,
            event_id: SmolStr::new(event_id),
            time,
            credential,
            principal,
            session,
            client,
            operation,
            resources,
            outcome,
            region: region.map(SmolStr::new),
            provenance,
        },
        facts,
    ))
}

fn principal_of(ui: &RawUserIdentity<'_>) -> Principal {
    let kind = match ui.kind.get() {
        // Service-linked roles act for AWS services, not for anyone's credential.
        // (This arm must precede the plain `AssumedRole` arm, or it is unreachable.)
        Some("AssumedRole")
            if ui
                .arn
                .get()
                .is_some_and(|a| a.contains(":assumed-role/AWSServiceRoleFor")) =>
        {
            PrincipalKind::Service
        }
        Some("IAMUser") => PrincipalKind::IamUser,
        Some("AssumedRole") => PrincipalKind::AssumedRole,
        Some("Root") => PrincipalKind::Root,
        Some("FederatedUser") => PrincipalKind::FederatedUser,
        Some("SAMLUser") | Some("WebIdentityUser") | Some("IdentityCenterUser") => {
            PrincipalKind::SsoUser
        }
        Some("AWSService") | Some("AWSAccount") => PrincipalKind::Service,
        None if ui.invoked_by.get().is_some() => PrincipalKind::Service,
        _ => PrincipalKind::Unknown,
    };
    let name = match kind {
        PrincipalKind::AssumedRole => ui
            .session_context
            .0
            .as_ref()
            .and_then(|c| c.session_issuer.0.as_ref())
            .and_then(|i| s(&i.user_name)),
        PrincipalKind::Service => s(&ui.invoked_by),
        _ => s(&ui.user_name).or_else(|| ui.on_behalf_of.0.as_ref().and_then(|o| s(&o.user_id))),
    };
    Principal {
        kind,
        id: s(&ui.principal_id),
        name,
        arn: s(&ui.arn),
        account: s(&ui.account_id),
    }
}

fn session_of(ui: &RawUserIdentity<'_>) -> SessionContext {
    let ctx = ui.session_context.0.as_ref();
    let issuer_arn = ctx
        .and_then(|c| c.session_issuer.0.as_ref())
        .and_then(|i| s(&i.arn));
    // arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION-NAME
    let role_session_name = ui
        .arn
        .get()
        .filter(|arn| arn.contains(":assumed-role/"))
        .and_then(|arn| arn.rsplit('/').next())
        .map(SmolStr::new);
    let attrs = ctx.and_then(|c| c.attributes.0.as_ref());
    SessionContext {
        parent_credential: None,
        issuer_arn,
        role_session_name,
        source_identity: ctx.and_then(|c| s(&c.source_identity)),
        mfa_authenticated: attrs.and_then(|a| a.mfa_authenticated.0),
        created_at: attrs
            .and_then(|a| a.creation_date.get())
            .and_then(parse_time),
    }
}

fn resources_of(
    listed: &[RawResource<'_>],
    req: &RawRequest<'_>,
    service: &str,
    region: Option<&str>,
    account: Option<&str>,
) -> Vec<SmolStr> {
    let mut out: Vec<SmolStr> = listed.iter().filter_map(|r| s(&r.arn)).collect();
    let region = region.unwrap_or("");
    let account = account.unwrap_or("");
    let mut push = |arn: String| {
        if !out.iter().any(|r| r == arn.as_str()) {
            out.push(SmolStr::new(arn));
        }
    };
    match service {
        "s3" => {
            if let Some(bucket) = req.bucket_name.get() {
                match req.key.get() {
                    Some(key) => push(format!("arn:aws:s3:::{bucket}/{key}")),
                    None => push(format!("arn:aws:s3:::{bucket}")),
                }
            }
        }
        "secretsmanager" => {
            if let Some(id) = req.secret_id.get() {
                if id.starts_with("arn:") {
                    push(id.to_owned());
                } else {
                    push(format!(
                        "arn:aws:secretsmanager:{region}:{account}:secret:{id}"
                    ));
                }
            }
        }
        "ssm" => {
            if let Some(name) = req.name.get() {
                push(format!(
                    "arn:aws:ssm:{region}:{account}:parameter/{}",
                    name.trim_start_matches('/')
                ));
            }
        }
        "iam" => {
            if let Some(user) = req.user_name.get() {
                push(format!("arn:aws:iam::{account}:user/{user}"));
            }
            if let Some(role) = req.role_name.get() {
                push(format!("arn:aws:iam::{account}:role/{role}"));
            }
        }
        "sts" => {
            if let Some(role) = req.role_arn.get() {
                push(role.to_owned());
            }
        }
        "lambda" => {
            if let Some(f) = req.function_name.get() {
                if f.starts_with("arn:") {
                    push(f.to_owned());
                } else {
                    push(format!("arn:aws:lambda:{region}:{account}:function:{f}"));
                }
            }
        }
        "ec2" => {
            if let Some(i) = req.instance_id.get() {
                push(format!("arn:aws:ec2:{region}:{account}:instance/{i}"));
            }
        }
        _ => {}
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn facts_of(
    event_name: &str,
    event_id: &str,
    time: DateTime<Utc>,
    caller: Option<&CredentialRef>,
    principal: &Principal,
    req: &RawRequest<'_>,
    resp: &RawResponse<'_>,
    account: Option<&SmolStr>,
) -> Vec<LineageFact> {
    let fact = |kind| LineageFact {
        time,
        source: Source::CloudTrail,
        event_id: SmolStr::new(event_id),
        kind,
    };
    let sts_method = match event_name {
        "AssumeRole" => Some(IssuanceMethod::AssumeRole),
        "AssumeRoleWithSAML" => Some(IssuanceMethod::AssumeRoleWithSaml),
        "AssumeRoleWithWebIdentity" => Some(IssuanceMethod::AssumeRoleWithWebIdentity),
        "GetSessionToken" => Some(IssuanceMethod::GetSessionToken),
        "GetFederationToken" => Some(IssuanceMethod::GetFederationToken),
        _ => None,
    };
    if let Some(method) = sts_method {
        let Some(creds) = resp.credentials.0.as_ref() else {
            return Vec::new();
        };
        let Some(child_key) = creds.access_key_id.get() else {
            return Vec::new();
        };
        let issued_to = match method {
            IssuanceMethod::GetSessionToken => principal.arn.clone(),
            IssuanceMethod::GetFederationToken => resp
                .federated_user
                .0
                .as_ref()
                .and_then(|f| s(&f.arn))
                .or_else(|| s(&req.name)),
            _ => s(&req.role_arn)
                .or_else(|| resp.assumed_role_user.0.as_ref().and_then(|u| s(&u.arn))),
        };
        return vec![fact(FactKind::CredentialIssued {
            parent: caller.cloned(),
            child: CredentialRef {
                kind: CredentialKind::from_aws_key_id(child_key),
                id: CredentialId::new(child_key),
                issuer: account.cloned(),
            },
            issued_by: principal.clone(),
            issued_to,
            method,
            session_name: s(&req.role_session_name).or_else(|| s(&req.name)),
            source_identity: s(&req.source_identity).or_else(|| s(&resp.source_identity)),
        })];
    }
    match event_name {
        "CreateAccessKey" => {
            let Some(key) = resp.access_key.0.as_ref() else {
                return Vec::new();
            };
            let Some(id) = key.access_key_id.get() else {
                return Vec::new();
            };
            // Without `userName` in the request, the key is for the caller itself.
            let user = s(&key.user_name)
                .or_else(|| s(&req.user_name))
                .or_else(|| principal.name.clone());
            vec![fact(FactKind::CredentialIssued {
                parent: caller.cloned(),
                child: CredentialRef {
                    kind: CredentialKind::from_aws_key_id(id),
                    id: CredentialId::new(id),
                    issuer: account.cloned(),
                },
                issued_by: principal.clone(),
                issued_to: user,
                method: IssuanceMethod::CreateAccessKey,
                session_name: None,
                source_identity: None,
            })]
        }
        "DeleteAccessKey" | "UpdateAccessKey" => {
            let Some(id) = req.access_key_id.get() else {
                return Vec::new();
            };
            let status = if event_name == "DeleteAccessKey" {
                SmolStr::new_static("Deleted")
            } else {
                s(&req.status).unwrap_or_else(|| SmolStr::new_static("Unknown"))
            };
            vec![fact(FactKind::CredentialStatusChanged {
                credential: CredentialRef {
                    kind: CredentialKind::from_aws_key_id(id),
                    id: CredentialId::new(id),
                    issuer: account.cloned(),
                },
                status,
                changed_by: principal.clone(),
            })]
        }
        _ => Vec::new(),
    }
}

/// The MCP server a user agent names, for the common `mcp-server-<name>` / `<name>-mcp` forms.
pub fn mcp_server_from_user_agent(ua: &str) -> Option<SmolStr> {
    // Every form below contains `mcp`: most user agents are rejected by one memchr
    // pass instead of a window scan of every token (this runs once per record).
    let b = ua.as_bytes();
    let has_mcp = memchr::memchr2_iter(b'm', b'M', b).any(|i| {
        b.get(i + 1..i + 3)
            .is_some_and(|cp| cp.eq_ignore_ascii_case(b"cp"))
    });
    if !has_mcp {
        return None;
    }
    mcp_token(ua)
}

/// The first token of `ua` in one of the MCP server forms.
fn mcp_token(ua: &str) -> Option<SmolStr> {
    ua.split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .map(|tok| tok.split('/').next().unwrap_or(tok))
        .find(|name| {
            let b = name.as_bytes();
            let at = |i: usize, pat: &[u8]| {
                b.len() >= i + pat.len() && b[i..i + pat.len()].eq_ignore_ascii_case(pat)
            };
            at(0, b"mcp-server-")
                || (b.len() >= 4 && at(b.len() - 4, b"-mcp"))
                || (0..b.len()).any(|i| at(i, b"-mcp-server"))
        })
        .map(SmolStr::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_field_named_twice_in_two_letter_cases_is_refused_saying_so() {
        let record = br#"{"eventID":"a","eventid":"b","eventTime":"2026-11-02T10:00:00Z","eventSource":"s3.amazonaws.com","eventName":"ListBuckets","userIdentity":{"type":"IAMUser","accessKeyId":"AKIAX"}}"#;
        let e = CloudTrailParser
            .parse_record(record, Provenance::file("t", 1))
            .unwrap_err()
            .to_string();
        assert!(e.contains("names a field twice"), "{e}");
    }

    #[test]
    fn mcp_server_forms() {
        let name = |ua: &str| mcp_server_from_user_agent(ua).map(|s| s.to_string());
        assert_eq!(
            name("mcp-server-github/1.2 node/20").as_deref(),
            Some("mcp-server-github")
        );
        assert_eq!(
            name("python (MCP-Server-Fetch/0.1)").as_deref(),
            Some("MCP-Server-Fetch")
        );
        assert_eq!(name("aws-cli/2 jira-mcp/3").as_deref(), Some("jira-mcp"));
        assert_eq!(
            name("acme-mcp-server-x/1").as_deref(),
            Some("acme-mcp-server-x")
        );
        assert_eq!(name("aws-cli/2.15 Python/3.11 mcp"), None);
        assert_eq!(name("Mozilla/5.0"), None);
        assert_eq!(name(""), None);
    }

    fn chrono_time(text: &str) -> Option<DateTime<Utc>> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }

    #[test]
    fn event_times_read_by_hand_equal_chrono() {
        for text in [
            "2026-10-05T00:01:23Z",
            "2024-02-29T23:59:59Z",
            "1970-01-01T00:00:00Z",
            "0000-01-01T00:00:00Z",
        ] {
            assert!(utc_seconds(text).is_some(), "{text}");
            assert_eq!(utc_seconds(text), chrono_time(text), "{text}");
        }
        // Not the fixed form, or not a real time: left to chrono (which may accept it).
        for text in [
            "2023-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-10-05T24:00:00Z",
            "2026-10-05T23:59:60Z",
            "2026-10-05t00:01:23Z",
            "2026-10-05T00:01:23z",
            "2026-10-05T00:01:23.5Z",
            "2026-10-05T02:01:23+02:00",
            "+026-10-05T00:01:23Z",
            "2026-10-05T00:01:2\u{e9}",
        ] {
            assert_eq!(utc_seconds(text), None, "{text}");
            // What chrono reads, parse_time reads the same (and it reads more:
            // `crate::time` has those shapes).
            if chrono_time(text).is_some() {
                assert_eq!(parse_time(text), chrono_time(text), "{text}");
            }
        }
    }

    proptest! {
        /// The hand-read form never disagrees with chrono.
        #[test]
        fn event_time_agrees_with_chrono(text in "[0-9+-]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(Z|z|\\.[0-9]{1,3}Z|[+-][0-9]{2}:[0-9]{2})?") {
            if let Some(t) = utc_seconds(&text) {
                prop_assert_eq!(Some(t), chrono_time(&text));
            }
            if let Some(c) = chrono_time(&text) {
                prop_assert_eq!(parse_time(&text), Some(c));
            }
        }

        /// The `mcp` prefilter never changes the answer of the token scan.
        #[test]
        fn prefilter_agrees_with_the_token_scan(ua in "([a-zA-Z0-9/ ()-]|[mM][cC][pP]|-[mM][cC][pP]|[mM][cC][pP]-[sS]erver-|é){0,24}") {
            prop_assert_eq!(mcp_server_from_user_agent(&ua), mcp_token(&ua));
        }
    }
}
