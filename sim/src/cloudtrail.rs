//! Rendering CloudTrail records exactly as CloudTrail writes them.

use chrono::{DateTime, Utc};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

/// Who made a call, as `userIdentity` describes it.
pub(crate) enum Who<'a> {
    IamUser {
        user: &'a str,
        principal_id: &'a str,
        key: &'a str,
    },
    Role {
        role_arn: &'a str,
        session_name: &'a str,
        key: &'a str,
        created: DateTime<Utc>,
    },
    SamlUser {
        email: &'a str,
    },
    WebIdentity {
        subject: &'a str,
    },
    Service {
        service: &'a str,
    },
}

pub(crate) fn uuid(rng: &mut ChaCha8Rng) -> String {
    let a: u128 = rng.gen();
    let h = format!("{a:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

fn role_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

fn user_identity(who: &Who<'_>, account: &str) -> Value {
    match who {
        Who::IamUser {
            user,
            principal_id,
            key,
        } => json!({
            "type": "IAMUser",
            "principalId": principal_id,
            "arn": format!("arn:aws:iam::{account}:user/{user}"),
            "accountId": account,
            "accessKeyId": key,
            "userName": user,
        }),
        Who::Role {
            role_arn,
            session_name,
            key,
            created,
        } => {
            let role = role_name(role_arn);
            let role_id = format!("AROA{}", &key[4..].chars().rev().collect::<String>());
            json!({
                "type": "AssumedRole",
                "principalId": format!("{role_id}:{session_name}"),
                "arn": format!("arn:aws:sts::{account}:assumed-role/{role}/{session_name}"),
                "accountId": account,
                "accessKeyId": key,
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": role_id,
                        "arn": role_arn,
                        "accountId": account,
                        "userName": role,
                    },
                    "webIdFederationData": {},
                    "attributes": {
                        "creationDate": created.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                        "mfaAuthenticated": "false",
                    },
                },
            })
        }
        Who::SamlUser { email } => json!({
            "type": "SAMLUser",
            "principalId": format!("SAMLProvider/Okta:{email}"),
            "userName": email,
            "identityProvider": format!("arn:aws:iam::{account}:saml-provider/Okta"),
        }),
        Who::WebIdentity { subject } => json!({
            "type": "WebIdentityUser",
            "principalId": format!("arn:aws:iam::{account}:oidc-provider/token.actions.githubusercontent.com:sts.amazonaws.com:{subject}"),
            "userName": subject,
            "identityProvider": "token.actions.githubusercontent.com",
        }),
        Who::Service { service } => json!({
            "type": "AWSService",
            "invokedBy": service,
        }),
    }
}

/// One CloudTrail record.
pub(crate) struct Call<'a> {
    pub(crate) time: DateTime<Utc>,
    pub(crate) who: Who<'a>,
    pub(crate) service: &'a str,
    pub(crate) operation: &'a str,
    pub(crate) read_only: bool,
    pub(crate) request: Value,
    pub(crate) response: Value,
    pub(crate) resources: Value,
    pub(crate) user_agent: &'a str,
    pub(crate) source_ip: &'a str,
    pub(crate) error: Option<(&'a str, &'a str)>,
}

/// Renders a record; returns its event id and JSON.
pub(crate) fn render(
    rng: &mut ChaCha8Rng,
    call: Call<'_>,
    account: &str,
    region: &str,
) -> (String, Value) {
    let event_id = uuid(rng);
    let request_id = uuid(rng);
    let host = format!("{}.{region}.amazonaws.com", call.service);
    let mut rec = json!({
        "eventVersion": "1.09",
        "userIdentity": user_identity(&call.who, account),
        "eventTime": call.time.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "eventSource": format!("{}.amazonaws.com", call.service),
        "eventName": call.operation,
        "awsRegion": region,
        "sourceIPAddress": call.source_ip,
        "userAgent": call.user_agent,
        "requestParameters": call.request,
        "responseElements": call.response,
        "requestID": request_id,
        "eventID": event_id,
        "readOnly": call.read_only,
        "eventType": if matches!(call.who, Who::Service { .. }) { "AwsServiceEvent" } else { "AwsApiCall" },
        "managementEvent": true,
        "recipientAccountId": account,
        "eventCategory": "Management",
        "tlsDetails": {
            "tlsVersion": "TLSv1.3",
            "cipherSuite": "TLS_AES_128_GCM_SHA256",
            "clientProvidedHostHeader": host,
        },
    });
    if let Some((code, message)) = call.error {
        rec["errorCode"] = json!(code);
        rec["errorMessage"] = json!(message);
    }
    if !call.resources.is_null() {
        rec["resources"] = call.resources;
    }
    (event_id, rec)
}

/// The `responseElements` of a successful STS call: the key id, and a session token
/// (fake, random) exactly where STS puts it, so tests can prove it never leaks.
pub(crate) fn sts_response(
    rng: &mut ChaCha8Rng,
    key: &str,
    role_arn: &str,
    session: &str,
    time: DateTime<Utc>,
) -> Value {
    let token: String = (0..64)
        .map(|_| {
            const B64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
            B64[rng.gen_range(0..B64.len())] as char
        })
        .collect();
    json!({
        "credentials": {
            "accessKeyId": key,
            "sessionToken": format!("IQoJb3JpZ2luX2VjE{token}"),
            "expiration": (time + chrono::Duration::hours(1)).format("%b %-d, %Y, %-I:%M:%S %p").to_string(),
        },
        "assumedRoleUser": {
            "assumedRoleId": format!("AROA{}:{session}", &key[4..]),
            "arn": format!("arn:aws:sts::{}:assumed-role/{}/{session}",
                role_arn.split(':').nth(4).unwrap_or(""), role_name(role_arn)),
        },
    })
}
