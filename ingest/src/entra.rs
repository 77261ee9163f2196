//! Microsoft Entra ID (Azure AD) sign-in and directory-audit records.
//!
//! # Accepted shapes
//!
//! - **Microsoft Graph API** objects from `/auditLogs/signIns` (v1.0 and beta: user
//!   sign-ins and the `signInEventTypes` view of service-principal and managed-identity
//!   sign-ins) and `/auditLogs/directoryAudits`: `{"value":[…]}` pages (with
//!   `@odata.context` / `@odata.nextLink`), bare arrays, single objects, JSON lines.
//! - **Azure Monitor diagnostic export** (storage account, Event Hub, `az monitor`):
//!   `{"records":[…]}` or one record per line, each `{time, resourceId, operationName,
//!   category, tenantId, resultType, callerIpAddress, correlationId, identity,
//!   properties:{…the Graph-like object…}}` with `category` one of `SignInLogs`,
//!   `NonInteractiveUserSignInLogs`, `ServicePrincipalSignInLogs`,
//!   `ManagedIdentitySignInLogs`, `AuditLogs` (other `…SignInLogs` / `…AuditLogs`
//!   categories are read by the fields they carry; any other category is
//!   dead-lettered with its name).
//!
//! A record with a `properties` object is a diagnostic record (a `properties`
//! string holding JSON, as some pipelines write it, is parsed); otherwise it is a
//! Graph object. Field names are matched **case-insensitively** at every level
//! (`appId` / `AppId`, `ipAddress` / `IPAddress`), because exports re-case them; when
//! one object holds the same name in two casings, the first one wins.
//!
//! # Sign-ins → [`CredentialUse`]
//!
//! | field | from |
//! |---|---|
//! | `event_id` | `id` (Graph), `properties.id`, else `correlationId`; without any, `sha256:` + 16 hex of the record's bytes, as every source does |
//! | `time` | `createdDateTime`, else the diagnostic `time` |
//! | `operation` | service `entra`, name by kind: `SignIn` (interactive user), `NonInteractiveSignIn`, `ServicePrincipalSignIn`, `ManagedIdentitySignIn`; the kind comes from the diagnostic `category`, else `signInEventTypes` / `managedIdentityType` / `isInteractive`, else from which identity fields are present. Scope globs: `entra:*SignIn` matches them all |
//! | `principal` (user) | kind `user`, name = `userPrincipalName` (else `userId`), id = `userId`, account = tenant |
//! | `principal` (service principal, managed identity) | kind `service-principal`, name = `appId` (the client id inventories bind; else `servicePrincipalId`), id = `servicePrincipalId`, arn = `servicePrincipalName` / `appDisplayName`, account = tenant |
//! | `credential` (service principal) | id = `servicePrincipalCredentialKeyId`, else `servicePrincipalCredentialThumbprint`, else `federatedCredentialId`; kind from `clientCredentialType` when present (`clientSecret`, `certificate` / `clientAssertion`, `federatedIdentityCredential`, `managedIdentity`), else a thumbprint ⇒ certificate, a federated credential id ⇒ federated credential, a key id alone ⇒ client secret (certificate sign-ins also log the thumbprint); issuer = tenant. No id in the record (e.g. a failed sign-in) ⇒ no credential |
//! | `credential` (managed identity) | kind `entra-managed-identity`, id = `servicePrincipalId`, else `msiResourceId` / `managedServiceIdentity.associatedResourceId`, else `appId` |
//! | `credential` (user) | none: the log never names the credential a user presented (password, MFA, refresh token). `sessionId` names a browser SSO session spanning many apps, not a credential, and `uniqueTokenIdentifier` names the token *issued*; attributing user sign-ins goes through the principal's UPN (an `entra_upn` alias) |
//! | `session.mfa_authenticated` | `authenticationRequirement`: `multiFactorAuthentication` on a successful sign-in ⇒ true, `singleFactorAuthentication` ⇒ false |
//! | `client` | `userAgent`; `ipAddress` (else `callerIpAddress`); `client_app` = `appDisplayName` (service principals: else `servicePrincipalName`); MCP server from the user agent |
//! | `resources` | `[resourceId]` (the resource application's id, e.g. `797f4846-…` for Azure Resource Manager), else `[resourceDisplayName]` |
//! | `outcome` | success iff `status.errorCode` is 0 (else the diagnostic `resultType` is `"0"` or `"Success"`; neither present ⇒ success); `error_code` = the code as text (`7000222` = expired client secret) |
//! | `region` | `location.countryOrRegion`, else `location.city`, else the diagnostic `location` |
//!
//! # Directory audits → [`CredentialUse`] + [`LineageFact`]s
//!
//! The use: service `entra-directory`, name = `activityDisplayName` with surrounding
//! white space trimmed, spaces and dashes kept as Entra writes them
//! (`entra-directory:Add service principal credentials`,
//! `entra-directory:Update application – Certificates and secrets management`);
//! `read_only` false (the directory audit log records changes). Principal: the
//! `initiatedBy.user` (kind `user`, name = UPN) or `initiatedBy.app` (kind
//! `service-principal`, name = `appId`, else `servicePrincipalId`), else kind
//! `unknown` named by the diagnostic `identity`. No credential: audit records do not
//! name the caller's credential. Resources: each target's `userPrincipalName` (users,
//! with a deleted user's object-id prefix removed, see below) or `id`. Outcome:
//! `result` = `success`, else failure with `resultReason` (or the `result`) as the
//! error code. `client.source_ip` = the initiating user's
//! `ipAddress`, else `callerIpAddress`; `user_agent` = `userAgent`, else the
//! `User-Agent` additional detail.
//!
//! Facts, only for successful records:
//! - **credential added / removed**: in every target, the modified properties
//!   `KeyDescription`, `KeyCredentials`, `PasswordCredentials` and
//!   `FederatedIdentityCredentials` are diffed old → new. Key ids are read from the
//!   `[KeyIdentifier=…,KeyType=…,…]` strings Entra writes, or from embedded JSON objects
//!   (`keyId` / `KeyIdentifier` / `id`, federated credentials by `Name` when they have no
//!   id). Each new key ⇒ `credential-issued` (no parent; child kind from `KeyType`:
//!   `Password` ⇒ client secret, `AsymmetricX509Cert` ⇒ certificate; federated
//!   properties ⇒ federated credential; issuer = tenant; `issued_by` = the initiator;
//!   `issued_to` = the target application's `appId`, read from `*.AppId` /
//!   `AppPrincipalId` properties, the first `TargetId.ServicePrincipalNames` entry, the
//!   `AppId` additional detail, else the target's object id; method `other`). Each
//!   vanished key ⇒ `credential-status-changed` to `Deleted`. When an
//!   `Add … credential(s)` or `… Certificates and secrets management` activity carries
//!   no key property at all, the child id falls back to `<target id>/<activity>`
//!   (kind `unknown`, or federated when the activity says so): it records that the
//!   target got a credential, but no sign-in will ever name that id. `Remove …
//!   credential(s)` without key properties falls back the same way to a `Deleted`.
//! - **owner added** (`Add owner to application`, `Add owner to service principal`):
//!   `owner-assigned` with subject = the application's `appId`
//!   (`Application.AppId` / `ServicePrincipal.AppId`, …) else its object id, owner =
//!   each `User` target's UPN (else object id).
//! - **account re-enabled or restored** (`Enable account`, `Restore user`, or any
//!   activity setting `AccountEnabled` to true): `owner-reinstated` for the user;
//! - **account disabled or deleted** (`Disable account`, `Delete user`, `Hard delete
//!   user`, or any activity setting `AccountEnabled` to false, like `Update user`):
//!   `owner-departed` with each `User` target's UPN (a deleted user's UPN, which Entra
//!   prefixes with the object id without dashes, is restored), else object id.
//!
//! Secret values never appear: Entra logs do not carry them, and only key ids, names
//! and types are read from the credential properties.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, Utc};
use lineage_core::secret::fingerprint;
use lineage_core::{
    ClientHints, CredentialId, CredentialKind, CredentialRef, CredentialUse, FactKind,
    IssuanceMethod, LineageFact, Operation, Outcome, Principal, PrincipalKind, Provenance,
    SessionContext, Source,
};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;
use smol_str::SmolStr;

use crate::cloudtrail::mcp_server_from_user_agent;
use crate::lenient::{LenientBool, LenientStr};
use crate::{Normalized, ParseError, SourceParser};

/// The Entra parser.
#[derive(Debug, Default, Clone, Copy)]
pub struct EntraParser;

// ---------------------------------------------------------------------------------
// Case-insensitive, lenient deserialization helpers.
// ---------------------------------------------------------------------------------

/// Visitor methods that accept a JSON type the field does not use and yield `$value`
/// (consuming nested lists and objects), so a wrong type never fails the record.
macro_rules! ignore_types {
    ($value:expr; $($ty:ident),* $(,)?) => { $( ignore_types!(@ $ty, $value); )* };
    (@ bool, $v:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> { Ok($v) }
    };
    (@ i64, $v:expr) => {
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> { Ok($v) }
    };
    (@ u64, $v:expr) => {
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> { Ok($v) }
    };
    (@ f64, $v:expr) => {
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> { Ok($v) }
    };
    (@ str, $v:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> { Ok($v) }
    };
    (@ unit, $v:expr) => {
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> { Ok($v) }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> { Ok($v) }
    };
    (@ seq, $v:expr) => {
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok($v)
        }
    };
    (@ map, $v:expr) => {
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok($v)
        }
    };
}

/// A nested object whose keys are matched case-insensitively (the struct's fields
/// are renamed to lowercase); any non-object value is kept as `None`.
struct Ci<T>(Option<T>);

impl<T> Default for Ci<T> {
    fn default() -> Self {
        Self(None)
    }
}

impl<T> Ci<T> {
    fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ci<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ci<T>;
            ignore_types!(Ci(None); bool, i64, u64, f64, unit, seq);
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            /// An object written as JSON text (Log Analytics exports `Status`,
            /// `DeviceDetail`, `LocationDetails` so): read as the object it holds.
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if !v.trim_start().starts_with('{') {
                    return Ok(Ci(None));
                }
                Ok(serde_json::from_str::<Value>(v)
                    .ok()
                    .and_then(|value| Ci::<T>::deserialize(value).ok())
                    .and_then(|c| c.0)
                    .map_or(Ci(None), |t| Ci(Some(t))))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(LowerKeys {
                    inner: map,
                    seen: Vec::new(),
                }))
                .map(|t| Ci(Some(t)))
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// Hands keys to the derived struct visitor lowercased; a key seen before in another
/// casing is skipped with its value (first one wins), so duplicates never fail a record.
struct LowerKeys<A> {
    inner: A,
    seen: Vec<u64>,
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A map key as text, borrowed when the input allows.
struct KeyText<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for KeyText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(KeyText(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for LowerKeys<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(KeyText(key)) = self.inner.next_key::<KeyText<'de>>()? else {
                return Ok(None);
            };
            let lower: Cow<'_, str> = if key.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(key.to_ascii_lowercase())
            } else {
                key
            };
            let h = fnv1a(&lower);
            if self.seen.contains(&h) {
                self.inner.next_value::<IgnoredAny>()?;
                continue;
            }
            self.seen.push(h);
            let d: de::value::StrDeserializer<'_, A::Error> =
                de::IntoDeserializer::into_deserializer(lower.as_ref());
            return seed.deserialize(d).map(Some);
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.inner.next_value_seed(seed)
    }
}

/// A list of objects that tolerates a non-list value and non-object entries.
struct CiList<T>(Vec<T>);

impl<T> Default for CiList<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for CiList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = CiList<T>;
            ignore_types!(CiList(Vec::new()); bool, i64, u64, f64, str, unit, map);
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(Ci(item)) = seq.next_element::<Ci<T>>()? {
                    out.extend(item);
                }
                Ok(CiList(out))
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// `signInEventTypes`: a list of strings, or one string (some exports flatten it);
/// kept lowercased, joined by `,`.
#[derive(Default)]
struct EventTypes(String);

impl<'de> Deserialize<'de> for EventTypes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EventTypes;
            ignore_types!(EventTypes::default(); bool, i64, u64, f64, unit, map);
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = String::new();
                while let Some(item) = seq.next_element::<LenientStr<'de>>()? {
                    if let Some(s) = item.get() {
                        out.push_str(&s.to_ascii_lowercase());
                        out.push(',');
                    }
                }
                Ok(EventTypes(out))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(EventTypes(v.to_ascii_lowercase()))
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(V)
    }
}

/// `location`: an object in Graph and in `properties`, a plain string (the region)
/// at the top of a diagnostic record.
#[derive(Default)]
struct RawLocationField<'a> {
    text: Option<Cow<'a, str>>,
    obj: Option<RawLocation<'a>>,
}

impl<'de: 'a, 'a> Deserialize<'de> for RawLocationField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = LenientStrOrCi::<RawLocation<'a>>::deserialize(d)?;
        Ok(RawLocationField {
            text: s.text,
            obj: s.obj,
        })
    }
}

/// A value that is either a string or an object (anything else is ignored).
struct LenientStrOrCi<'a, T> {
    text: Option<Cow<'a, str>>,
    obj: Option<T>,
}

impl<'de: 'a, 'a, T: Deserialize<'de>> Deserialize<'de> for LenientStrOrCi<'a, T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a, T>(PhantomData<(&'a (), T)>);
        impl<'de: 'a, 'a, T: Deserialize<'de>> Visitor<'de> for V<'a, T> {
            type Value = LenientStrOrCi<'a, T>;
            ignore_types!(LenientStrOrCi { text: None, obj: None }; bool, i64, u64, f64, unit, seq);
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an object")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(LenientStrOrCi {
                    text: Some(Cow::Borrowed(v)),
                    obj: None,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LenientStrOrCi {
                    text: Some(Cow::Owned(v.to_owned())),
                    obj: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let Ci(obj) = Ci::<T>::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(LenientStrOrCi { text: None, obj })
            }
            fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

// ---------------------------------------------------------------------------------
// Raw record shapes. Field names are lowercase: keys are lowercased before matching.
// ---------------------------------------------------------------------------------

/// One object of either shape: a Graph sign-in / directory audit, a diagnostic
/// record (whose `properties` holds the Graph-like object), or that `properties`.
#[derive(Deserialize, Default)]
struct RawObj<'a> {
    // Diagnostic envelope.
    #[serde(borrow, default)]
    time: LenientStr<'a>,
    #[serde(rename = "operationname", borrow, default)]
    operation_name: LenientStr<'a>,
    #[serde(borrow, default)]
    category: LenientStr<'a>,
    #[serde(rename = "tenantid", borrow, default)]
    tenant_id: LenientStr<'a>,
    #[serde(rename = "resulttype", borrow, default)]
    result_type: LenientStr<'a>,
    #[serde(rename = "calleripaddress", borrow, default)]
    caller_ip: LenientStr<'a>,
    #[serde(rename = "correlationid", borrow, default)]
    correlation_id: LenientStr<'a>,
    #[serde(borrow, default)]
    identity: LenientStr<'a>,
    /// An object; some pipelines stringify it (then it is parsed from the string).
    #[serde(borrow, default)]
    properties: Option<LenientStrOrCi<'a, Box<RawObj<'a>>>>,

    // Common.
    #[serde(borrow, default)]
    id: LenientStr<'a>,
    #[serde(rename = "useragent", borrow, default)]
    user_agent: LenientStr<'a>,

    // Sign-ins.
    #[serde(rename = "createddatetime", borrow, default)]
    created: LenientStr<'a>,
    #[serde(rename = "userprincipalname", borrow, default)]
    upn: LenientStr<'a>,
    #[serde(rename = "userid", borrow, default)]
    user_id: LenientStr<'a>,
    #[serde(rename = "appid", borrow, default)]
    app_id: LenientStr<'a>,
    #[serde(rename = "appdisplayname", borrow, default)]
    app_display_name: LenientStr<'a>,
    #[serde(rename = "ipaddress", borrow, default)]
    ip_address: LenientStr<'a>,
    #[serde(borrow, default)]
    location: RawLocationField<'a>,
    #[serde(rename = "resourcedisplayname", borrow, default)]
    resource_display_name: LenientStr<'a>,
    #[serde(rename = "resourceid", borrow, default)]
    resource_id: LenientStr<'a>,
    #[serde(borrow, default)]
    status: Ci<RawStatus<'a>>,
    #[serde(rename = "serviceprincipalid", borrow, default)]
    sp_id: LenientStr<'a>,
    #[serde(rename = "serviceprincipalname", borrow, default)]
    sp_name: LenientStr<'a>,
    #[serde(rename = "serviceprincipalcredentialkeyid", borrow, default)]
    sp_key_id: LenientStr<'a>,
    #[serde(rename = "serviceprincipalcredentialthumbprint", borrow, default)]
    sp_thumbprint: LenientStr<'a>,
    #[serde(rename = "federatedcredentialid", borrow, default)]
    federated_credential_id: LenientStr<'a>,
    #[serde(rename = "managedidentitytype", borrow, default)]
    managed_identity_type: LenientStr<'a>,
    #[serde(rename = "managedserviceidentity", borrow, default)]
    managed_service_identity: Ci<RawMsi<'a>>,
    #[serde(rename = "msiresourceid", borrow, default)]
    msi_resource_id: LenientStr<'a>,
    #[serde(rename = "clientcredentialtype", borrow, default)]
    client_credential_type: LenientStr<'a>,
    #[serde(rename = "signineventtypes", default)]
    sign_in_event_types: EventTypes,
    #[serde(rename = "isinteractive", default)]
    is_interactive: LenientBool,
    #[serde(rename = "authenticationrequirement", borrow, default)]
    authentication_requirement: LenientStr<'a>,
    #[serde(rename = "hometenantid", borrow, default)]
    home_tenant_id: LenientStr<'a>,
    #[serde(rename = "resourcetenantid", borrow, default)]
    resource_tenant_id: LenientStr<'a>,

    // Directory audits.
    #[serde(rename = "activitydatetime", borrow, default)]
    activity_time: LenientStr<'a>,
    #[serde(rename = "activitydisplayname", borrow, default)]
    activity: LenientStr<'a>,
    #[serde(borrow, default)]
    result: LenientStr<'a>,
    #[serde(rename = "resultreason", borrow, default)]
    result_reason: LenientStr<'a>,
    #[serde(rename = "initiatedby", borrow, default)]
    initiated_by: Ci<RawInitiatedBy<'a>>,
    #[serde(rename = "targetresources", borrow, default)]
    targets: CiList<RawTarget<'a>>,
    #[serde(rename = "additionaldetails", borrow, default)]
    additional_details: CiList<RawKeyValue<'a>>,
}

#[derive(Deserialize, Default)]
struct RawLocation<'a> {
    #[serde(borrow, default)]
    city: LenientStr<'a>,
    #[serde(rename = "countryorregion", borrow, default)]
    country: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawStatus<'a> {
    #[serde(rename = "errorcode", borrow, default)]
    error_code: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawMsi<'a> {
    #[serde(rename = "msitype", borrow, default)]
    msi_type: LenientStr<'a>,
    #[serde(rename = "associatedresourceid", borrow, default)]
    associated_resource_id: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawInitiatedBy<'a> {
    #[serde(borrow, default)]
    user: Ci<RawInitiatorUser<'a>>,
    #[serde(borrow, default)]
    app: Ci<RawInitiatorApp<'a>>,
}

#[derive(Deserialize, Default)]
struct RawInitiatorUser<'a> {
    #[serde(borrow, default)]
    id: LenientStr<'a>,
    #[serde(rename = "userprincipalname", borrow, default)]
    upn: LenientStr<'a>,
    #[serde(rename = "ipaddress", borrow, default)]
    ip_address: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawInitiatorApp<'a> {
    #[serde(rename = "appid", borrow, default)]
    app_id: LenientStr<'a>,
    #[serde(rename = "displayname", borrow, default)]
    display_name: LenientStr<'a>,
    #[serde(rename = "serviceprincipalid", borrow, default)]
    sp_id: LenientStr<'a>,
    #[serde(rename = "serviceprincipalname", borrow, default)]
    sp_name: LenientStr<'a>,
}

#[derive(Deserialize, Default)]
struct RawTarget<'a> {
    #[serde(borrow, default)]
    id: LenientStr<'a>,
    #[serde(rename = "displayname", borrow, default)]
    display_name: LenientStr<'a>,
    #[serde(rename = "type", borrow, default)]
    kind: LenientStr<'a>,
    #[serde(rename = "userprincipalname", borrow, default)]
    upn: LenientStr<'a>,
    #[serde(rename = "modifiedproperties", borrow, default)]
    modified: CiList<RawModified<'a>>,
}

/// `oldValue` / `newValue` are JSON text in a string in practice, but some exports
/// inline the JSON; both are kept as values.
#[derive(Deserialize, Default)]
struct RawModified<'a> {
    #[serde(rename = "displayname", borrow, default)]
    name: LenientStr<'a>,
    #[serde(rename = "oldvalue", default)]
    old: Option<Value>,
    #[serde(rename = "newvalue", default)]
    new: Option<Value>,
}

#[derive(Deserialize, Default)]
struct RawKeyValue<'a> {
    #[serde(borrow, default)]
    key: LenientStr<'a>,
    #[serde(borrow, default)]
    value: LenientStr<'a>,
}

// ---------------------------------------------------------------------------------
// Parsing.
// ---------------------------------------------------------------------------------

fn s(v: &LenientStr<'_>) -> Option<SmolStr> {
    v.get()
        .map(|t| SmolStr::new(t.trim()))
        .filter(|t| !t.is_empty())
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    crate::time::parse_time(text)
}

impl SourceParser for EntraParser {
    fn source(&self) -> Source {
        Source::Entra
    }

    fn envelope_keys(&self) -> &'static [&'static str] {
        &["records", "value"]
    }

    fn parse_record(&self, bytes: &[u8], provenance: Provenance) -> Result<Normalized, ParseError> {
        let Ci(raw) = serde_json::from_slice::<Ci<RawObj<'_>>>(bytes).map_err(|e| {
            if e.classify() == serde_json::error::Category::Data {
                ParseError::NotARecord(format!("Entra record is not a JSON object: {e}"))
            } else {
                ParseError::InvalidJson(e.to_string())
            }
        })?;
        let raw =
            raw.ok_or_else(|| ParseError::NotARecord("Entra record is not a JSON object".into()))?;
        normalize(&raw, provenance, bytes)
    }
}

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    SignIn(SignInKind),
    Audit,
}

/// Whose sign-in it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SignInKind {
    User { interactive: bool },
    ServicePrincipal,
    ManagedIdentity,
}

/// The record's parts: the diagnostic envelope (when there is one) and the Graph-like object.
struct Parts<'r, 'a> {
    outer: Option<&'r RawObj<'a>>,
    inner: &'r RawObj<'a>,
}

impl Parts<'_, '_> {
    fn tenant(&self) -> Option<SmolStr> {
        self.outer
            .and_then(|o| s(&o.tenant_id))
            .or_else(|| s(&self.inner.tenant_id))
            .or_else(|| {
                // "/tenants/<id>/providers/Microsoft.aadiam"
                self.outer
                    .and_then(|o| o.resource_id.get())
                    .and_then(|r| r.strip_prefix("/tenants/"))
                    .and_then(|r| r.split('/').next())
                    .filter(|t| !t.is_empty())
                    .map(SmolStr::new)
            })
            .or_else(|| s(&self.inner.home_tenant_id))
            .or_else(|| s(&self.inner.resource_tenant_id))
    }
}

/// `bytes`: the record as read, for the content-hash id of a record without an id.
fn normalize(
    raw: &RawObj<'_>,
    provenance: Provenance,
    bytes: &[u8],
) -> Result<Normalized, ParseError> {
    match &raw.properties {
        Some(LenientStrOrCi {
            obj: Some(props), ..
        }) => normalize_parts(
            Parts {
                outer: Some(raw),
                inner: props,
            },
            provenance,
            bytes,
        ),
        Some(LenientStrOrCi {
            text: Some(text), ..
        }) => {
            let Ci(props) = serde_json::from_str::<Ci<RawObj<'_>>>(text).map_err(|e| {
                ParseError::InvalidField("properties", format!("is a string but not JSON: {e}"))
            })?;
            let props = props.ok_or_else(|| {
                ParseError::InvalidField("properties", "is a string holding no JSON object".into())
            })?;
            normalize_parts(
                Parts {
                    outer: Some(raw),
                    inner: &props,
                },
                provenance,
                bytes,
            )
        }
        _ => normalize_parts(
            Parts {
                outer: None,
                inner: raw,
            },
            provenance,
            bytes,
        ),
    }
}

fn normalize_parts(
    parts: Parts<'_, '_>,
    provenance: Provenance,
    bytes: &[u8],
) -> Result<Normalized, ParseError> {
    let kind = kind_of(&parts)?;
    let inner = parts.inner;
    let event_id = s(&inner.id)
        .or_else(|| parts.outer.and_then(|o| s(&o.correlation_id)))
        .or_else(|| s(&inner.correlation_id))
        // One rule for every source: no id of its own, a content hash.
        .unwrap_or_else(|| SmolStr::new(fingerprint(&String::from_utf8_lossy(bytes))));
    let (time_field, time_text) = match kind {
        Kind::Audit => ("activityDateTime", s(&inner.activity_time)),
        _ => ("createdDateTime", s(&inner.created)),
    };
    let time_text = time_text
        .or_else(|| parts.outer.and_then(|o| s(&o.time)))
        .ok_or(ParseError::MissingField(time_field))?;
    let time = parse_time(&time_text).ok_or_else(|| {
        ParseError::InvalidField(time_field, format!("`{time_text}` is not an RFC 3339 time"))
    })?;
    let tenant = parts.tenant();
    match kind {
        Kind::Audit => normalize_audit(&parts, event_id, time, tenant, provenance),
        Kind::SignIn(who) => Ok(normalize_sign_in(
            &parts, who, event_id, time, tenant, provenance,
        )),
    }
}

fn kind_of(parts: &Parts<'_, '_>) -> Result<Kind, ParseError> {
    let category = parts
        .outer
        .and_then(|o| o.category.get())
        .map(|c| c.trim().to_ascii_lowercase());
    match category.as_deref() {
        Some("signinlogs") => return Ok(Kind::SignIn(SignInKind::User { interactive: true })),
        Some("noninteractiveusersigninlogs") => {
            return Ok(Kind::SignIn(SignInKind::User { interactive: false }))
        }
        Some("serviceprincipalsigninlogs") => {
            return Ok(Kind::SignIn(SignInKind::ServicePrincipal))
        }
        Some("managedidentitysigninlogs") => return Ok(Kind::SignIn(SignInKind::ManagedIdentity)),
        Some("auditlogs") => return Ok(Kind::Audit),
        Some(c) if c.ends_with("auditlogs") => return Ok(Kind::Audit),
        Some(c) if c.ends_with("signinlogs") => {
            return Ok(Kind::SignIn(sign_in_kind(parts.inner)));
        }
        Some(c) if !c.is_empty() => {
            return Err(ParseError::NotARecord(format!(
                "Entra log category `{}` is neither a sign-in nor a directory-audit log",
                parts.outer.and_then(|o| o.category.get()).unwrap_or(c)
            )))
        }
        _ => {}
    }
    let inner = parts.inner;
    if inner.activity.get().is_some() || inner.activity_time.get().is_some() {
        return Ok(Kind::Audit);
    }
    let looks_like_sign_in = inner.created.get().is_some()
        || inner.status.get().is_some()
        || inner.app_id.get().is_some()
        || inner.sp_id.get().is_some()
        || !inner.sign_in_event_types.0.is_empty();
    if looks_like_sign_in {
        return Ok(Kind::SignIn(sign_in_kind(inner)));
    }
    Err(ParseError::NotARecord(
        "neither an Entra sign-in (createdDateTime, appId, status) nor a directory audit \
         (activityDisplayName, activityDateTime)"
            .into(),
    ))
}

fn sign_in_kind(inner: &RawObj<'_>) -> SignInKind {
    let types = inner.sign_in_event_types.0.as_str();
    let mi_type = inner
        .managed_identity_type
        .get()
        .or_else(|| inner.managed_service_identity.get()?.msi_type.get())
        .map(str::to_ascii_lowercase);
    let cred_type = inner
        .client_credential_type
        .get()
        .map(str::to_ascii_lowercase);
    if types.contains("managedidentity")
        || mi_type
            .as_deref()
            .is_some_and(|t| !t.is_empty() && t != "none")
        || cred_type.as_deref() == Some("managedidentity")
    {
        return SignInKind::ManagedIdentity;
    }
    if types.contains("serviceprincipal") {
        return SignInKind::ServicePrincipal;
    }
    if types.contains("noninteractiveuser") {
        return SignInKind::User { interactive: false };
    }
    if types.contains("interactiveuser") {
        return SignInKind::User { interactive: true };
    }
    let has_user = inner.upn.get().is_some() || inner.user_id.get().is_some();
    let has_sp = inner.sp_id.get().is_some()
        || inner.sp_key_id.get().is_some()
        || inner.sp_thumbprint.get().is_some()
        || inner.federated_credential_id.get().is_some();
    if !has_user && has_sp {
        return SignInKind::ServicePrincipal;
    }
    SignInKind::User {
        interactive: inner.is_interactive.0 != Some(false),
    }
}

fn normalize_sign_in(
    parts: &Parts<'_, '_>,
    kind: SignInKind,
    event_id: SmolStr,
    time: DateTime<Utc>,
    tenant: Option<SmolStr>,
    provenance: Provenance,
) -> Normalized {
    let inner = parts.inner;
    let outcome = match inner
        .status
        .get()
        .and_then(|st| s(&st.error_code))
        .or_else(|| parts.outer.and_then(|o| s(&o.result_type)))
    {
        // Diagnostic exports write `resultType` as the code (`"0"`) or, in some
        // shapes, as the word `Success`.
        Some(code) if code == "0" || code.eq_ignore_ascii_case("success") => Outcome::ok(),
        Some(code) => Outcome {
            success: false,
            error_code: Some(code),
        },
        None => Outcome::ok(),
    };

    let (principal, credential, op_name) = match kind {
        SignInKind::User { interactive } => (
            Principal {
                kind: PrincipalKind::User,
                id: s(&inner.user_id),
                name: s(&inner.upn).or_else(|| s(&inner.user_id)),
                arn: None,
                account: tenant.clone(),
            },
            None,
            if interactive {
                "SignIn"
            } else {
                "NonInteractiveSignIn"
            },
        ),
        SignInKind::ServicePrincipal | SignInKind::ManagedIdentity => {
            let principal = Principal {
                kind: PrincipalKind::ServicePrincipal,
                id: s(&inner.sp_id),
                name: s(&inner.app_id).or_else(|| s(&inner.sp_id)),
                arn: s(&inner.sp_name).or_else(|| s(&inner.app_display_name)),
                account: tenant.clone(),
            };
            if kind == SignInKind::ManagedIdentity {
                let id = s(&inner.sp_id)
                    .or_else(|| s(&inner.msi_resource_id))
                    .or_else(|| {
                        inner
                            .managed_service_identity
                            .get()
                            .and_then(|m| s(&m.associated_resource_id))
                    })
                    .or_else(|| s(&inner.app_id));
                let credential = id.map(|id| CredentialRef {
                    kind: CredentialKind::EntraManagedIdentity,
                    id: CredentialId::new(id),
                    issuer: tenant.clone(),
                });
                (principal, credential, "ManagedIdentitySignIn")
            } else {
                (
                    principal,
                    sp_credential(inner, tenant.as_ref()),
                    "ServicePrincipalSignIn",
                )
            }
        }
    };

    let mfa_authenticated = match inner.authentication_requirement.get() {
        Some(r) if r.eq_ignore_ascii_case("multiFactorAuthentication") && outcome.success => {
            Some(true)
        }
        Some(r) if r.eq_ignore_ascii_case("singleFactorAuthentication") => Some(false),
        _ => None,
    };
    let user_agent = s(&inner.user_agent);
    let client = ClientHints {
        mcp_server: user_agent.as_deref().and_then(mcp_server_from_user_agent),
        user_agent,
        source_ip: s(&inner.ip_address).or_else(|| parts.outer.and_then(|o| s(&o.caller_ip))),
        client_app: s(&inner.app_display_name).or_else(|| match kind {
            SignInKind::User { .. } => None,
            _ => s(&inner.sp_name),
        }),
    };
    let resources = s(&inner.resource_id)
        .or_else(|| s(&inner.resource_display_name))
        .into_iter()
        .collect();
    let location = inner.location.obj.as_ref();
    let region = location
        .and_then(|l| s(&l.country).or_else(|| s(&l.city)))
        .or_else(|| {
            parts
                .outer
                .and_then(|o| o.location.text.as_deref())
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(SmolStr::new)
        });

    Normalized::whole(
        CredentialUse {
            source: Source::Entra,
            event_id,
            time,
            credential,
            principal,
            session: SessionContext {
                mfa_authenticated,
                ..SessionContext::default()
            },
            client,
            operation: Operation {
                service: SmolStr::new_static("entra"),
                name: SmolStr::new_static(op_name),
                read_only: None,
            },
            resources,
            outcome,
            region,
            provenance,
        },
        Vec::new(),
    )
}

/// The credential a service principal signed in with, when the record names it.
fn sp_credential(inner: &RawObj<'_>, tenant: Option<&SmolStr>) -> Option<CredentialRef> {
    let key_id = s(&inner.sp_key_id);
    let thumbprint = s(&inner.sp_thumbprint);
    let federated = s(&inner.federated_credential_id);
    let declared =
        inner
            .client_credential_type
            .get()
            .and_then(|t| match t.to_ascii_lowercase().as_str() {
                "clientsecret" => Some(CredentialKind::EntraClientSecret),
                "certificate" | "clientassertion" => Some(CredentialKind::EntraCertificate),
                "federatedidentitycredential" => Some(CredentialKind::EntraFederatedCredential),
                "managedidentity" => Some(CredentialKind::EntraManagedIdentity),
                _ => None,
            });
    let (id, implied) = if let Some(k) = key_id {
        let implied = if thumbprint.is_some() {
            CredentialKind::EntraCertificate
        } else {
            CredentialKind::EntraClientSecret
        };
        (k, implied)
    } else if let Some(t) = thumbprint {
        (t, CredentialKind::EntraCertificate)
    } else if let Some(f) = federated {
        (f, CredentialKind::EntraFederatedCredential)
    } else {
        return None;
    };
    Some(CredentialRef {
        kind: declared.unwrap_or(implied),
        id: CredentialId::new(id),
        issuer: tenant.cloned(),
    })
}

// ---------------------------------------------------------------------------------
// Directory audits.
// ---------------------------------------------------------------------------------

fn normalize_audit(
    parts: &Parts<'_, '_>,
    event_id: SmolStr,
    time: DateTime<Utc>,
    tenant: Option<SmolStr>,
    provenance: Provenance,
) -> Result<Normalized, ParseError> {
    let inner = parts.inner;
    let activity = s(&inner.activity)
        .or_else(|| parts.outer.and_then(|o| s(&o.operation_name)))
        .ok_or(ParseError::MissingField("activityDisplayName"))?;

    let initiated = inner.initiated_by.get();
    let user = initiated
        .and_then(|i| i.user.get())
        .filter(|u| u.upn.get().is_some() || u.id.get().is_some());
    let app = initiated
        .and_then(|i| i.app.get())
        .filter(|a| a.app_id.get().is_some() || a.sp_id.get().is_some());
    let principal = if let Some(u) = user {
        Principal {
            kind: PrincipalKind::User,
            id: s(&u.id),
            name: s(&u.upn).or_else(|| s(&u.id)),
            arn: None,
            account: tenant.clone(),
        }
    } else if let Some(a) = app {
        Principal {
            kind: PrincipalKind::ServicePrincipal,
            id: s(&a.sp_id),
            name: s(&a.app_id).or_else(|| s(&a.sp_id)),
            arn: s(&a.sp_name).or_else(|| s(&a.display_name)),
            account: tenant.clone(),
        }
    } else {
        Principal {
            name: parts.outer.and_then(|o| s(&o.identity)),
            account: tenant.clone(),
            ..Principal::unknown()
        }
    };

    let outcome = match inner.result.get().map(str::trim) {
        Some(r) if r.eq_ignore_ascii_case("success") => Outcome::ok(),
        Some(r) if !r.is_empty() => Outcome {
            success: false,
            error_code: s(&inner.result_reason).or_else(|| Some(SmolStr::new(r))),
        },
        _ => Outcome::ok(),
    };

    let user_agent = s(&inner.user_agent).or_else(|| detail(inner, "User-Agent"));
    let client = ClientHints {
        mcp_server: user_agent.as_deref().and_then(mcp_server_from_user_agent),
        user_agent,
        source_ip: user
            .and_then(|u| s(&u.ip_address))
            .or_else(|| parts.outer.and_then(|o| s(&o.caller_ip))),
        client_app: initiated
            .and_then(|i| i.app.get())
            .and_then(|a| s(&a.display_name)),
    };

    let mut resources: Vec<SmolStr> = Vec::new();
    for t in &inner.targets.0 {
        let r = if is_user(t) {
            user_name_of(t)
        } else {
            s(&t.id).or_else(|| s(&t.display_name))
        };
        if let Some(r) = r {
            if !resources.contains(&r) {
                resources.push(r);
            }
        }
    }

    let facts = if outcome.success {
        audit_facts(
            &activity,
            inner,
            &principal,
            tenant.as_ref(),
            &event_id,
            time,
        )
    } else {
        Vec::new()
    };

    Ok(Normalized::whole(
        CredentialUse {
            source: Source::Entra,
            event_id,
            time,
            credential: None,
            principal,
            session: SessionContext::default(),
            client,
            operation: Operation {
                service: SmolStr::new_static("entra-directory"),
                name: activity,
                read_only: Some(false),
            },
            resources,
            outcome,
            region: None,
            provenance,
        },
        facts,
    ))
}

/// An `additionalDetails` value by key (case-insensitive).
fn detail(inner: &RawObj<'_>, key: &str) -> Option<SmolStr> {
    inner
        .additional_details
        .0
        .iter()
        .find(|kv| {
            kv.key
                .get()
                .is_some_and(|k| k.trim().eq_ignore_ascii_case(key))
        })
        .and_then(|kv| s(&kv.value))
}

fn is_user(t: &RawTarget<'_>) -> bool {
    match t.kind.get() {
        Some(k) => k.trim().eq_ignore_ascii_case("user"),
        None => t.upn.get().is_some(),
    }
}

/// The text of a modified-property value: a string as is, other JSON as JSON text.
fn value_text(v: Option<&Value>) -> Option<Cow<'_, str>> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        other => Some(Cow::Owned(other.to_string())),
    }
}

/// A scalar modified-property value: `"\"x\""`, `"[\"x\"]"`, `"x"` → `x`.
fn scalar(v: Option<&Value>) -> Option<SmolStr> {
    fn first(v: &Value) -> Option<String> {
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Array(a) => a.iter().find_map(first),
            Value::Bool(b) => Some(b.to_string()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
    let text = value_text(v)?;
    let out = match serde_json::from_str::<Value>(&text) {
        Ok(parsed) => first(&parsed)?,
        Err(_) => text.trim().trim_matches('"').to_owned(),
    };
    let out = out.trim();
    (!out.is_empty()).then(|| SmolStr::new(out))
}

/// Whether a property value says "false" (`"[false]"`, `false`, `"False"`).
fn is_false(v: Option<&Value>) -> bool {
    scalar(v).is_some_and(|t| t.eq_ignore_ascii_case("false"))
}

fn is_true(v: Option<&Value>) -> bool {
    scalar(v).is_some_and(|t| t.eq_ignore_ascii_case("true"))
}

fn looks_like_guid(t: &str) -> bool {
    t.len() == 36 && t.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// The application (client) id of an audit target, else its object id.
fn app_id_of(t: &RawTarget<'_>, inner: &RawObj<'_>) -> Option<SmolStr> {
    let prop = |pred: &dyn Fn(&str) -> bool| {
        t.modified.0.iter().find_map(|p| {
            let name = p.name.get()?.trim().to_ascii_lowercase();
            if pred(&name) {
                scalar(p.new.as_ref()).or_else(|| scalar(p.old.as_ref()))
            } else {
                None
            }
        })
    };
    prop(&|n| n == "appid" || n.ends_with(".appid") || n == "appprincipalid")
        .or_else(|| {
            prop(&|n| n == "targetid.serviceprincipalnames").and_then(|names| {
                names
                    .split(';')
                    .map(str::trim)
                    .find(|n| looks_like_guid(n))
                    .map(SmolStr::new)
            })
        })
        .or_else(|| detail(inner, "AppId"))
        .or_else(|| s(&t.id))
}

/// A credential named in a modified property, with its kind.
#[derive(Clone, Debug, PartialEq, Eq)]
struct KeyRef {
    id: String,
    kind: CredentialKind,
}

fn kind_of_key_type(key_type: Option<&str>, federated: bool) -> CredentialKind {
    if federated {
        return CredentialKind::EntraFederatedCredential;
    }
    match key_type.map(|t| t.to_ascii_lowercase()) {
        Some(t) if t == "password" || t.contains("secret") => CredentialKind::EntraClientSecret,
        Some(t) if t.contains("x509") || t.contains("cert") => CredentialKind::EntraCertificate,
        _ => CredentialKind::Unknown,
    }
}

/// Key ids (and kinds) in a credential property value: the
/// `[KeyIdentifier=…,KeyType=…,KeyUsage=…,DisplayName=…]` strings Entra writes, or
/// JSON objects with `keyId` / `KeyIdentifier` / `id` (federated credentials: `Name`
/// when there is no id).
fn keys_in(v: Option<&Value>, federated: bool) -> Vec<KeyRef> {
    let Some(text) = value_text(v) else {
        return Vec::new();
    };
    let mut out: Vec<KeyRef> = Vec::new();
    let mut push = |id: &str, kind: CredentialKind| {
        let id = id.trim();
        if !id.is_empty() && !out.iter().any(|k| k.id == id) {
            out.push(KeyRef {
                id: id.to_owned(),
                kind,
            });
        }
    };
    // The `[KeyIdentifier=…]` form, alone (not inside a JSON array of strings).
    if text.trim_start().starts_with(KEY_ENTRY) {
        if let Some((id, key_type)) = key_entry(&text) {
            push(id, kind_of_key_type(key_type, federated));
        }
        return out;
    }
    let parsed = match serde_json::from_str::<Value>(&text) {
        Ok(p) => p,
        Err(_) => return out,
    };
    fn walk(v: &Value, federated: bool, push: &mut dyn FnMut(&str, CredentialKind)) {
        match v {
            Value::Array(a) => a.iter().for_each(|x| walk(x, federated, push)),
            Value::String(s) if s.trim_start().starts_with(KEY_ENTRY) => {
                if let Some((id, key_type)) = key_entry(s) {
                    push(id, kind_of_key_type(key_type, federated));
                }
            }
            Value::String(s) if s.trim_start().starts_with(['[', '{']) => {
                if let Ok(inner) = serde_json::from_str::<Value>(s) {
                    walk(&inner, federated, push);
                }
            }
            Value::Object(m) => {
                let field = |names: &[&str]| {
                    m.iter().find_map(|(k, v)| {
                        let k = k.to_ascii_lowercase();
                        if names.contains(&k.as_str()) {
                            v.as_str().filter(|s| !s.trim().is_empty())
                        } else {
                            None
                        }
                    })
                };
                let id = field(&[
                    "keyid",
                    "keyidentifier",
                    "federatedidentitycredentialid",
                    "id",
                ])
                .or_else(|| if federated { field(&["name"]) } else { None });
                if let Some(id) = id {
                    let key_type = field(&["keytype", "type"]);
                    push(id, kind_of_key_type(key_type, federated));
                }
            }
            _ => {}
        }
    }
    walk(&parsed, federated, &mut push);
    out
}

/// How each of Entra's key description strings opens.
const KEY_ENTRY: &str = "[KeyIdentifier=";

/// The key id and key type of one `[KeyIdentifier=…,KeyType=…,KeyUsage=…,DisplayName=…]`
/// string, read from their own fields only: the fields are taken in order up to
/// `DisplayName=`, which is last and chosen by whoever names the credential, so a
/// display name holding `KeyIdentifier=` or `KeyType=` names nothing.
fn key_entry(entry: &str) -> Option<(&str, Option<&str>)> {
    let fields = entry.trim_start().strip_prefix('[')?;
    let (mut id, mut key_type) = (None, None);
    for field in fields.split(',') {
        let field = field.trim_start();
        if field.starts_with("DisplayName=") {
            break;
        }
        let (name, value) = field.split_once('=')?;
        let value = value.trim_end_matches(']').trim();
        match name {
            "KeyIdentifier" => id = Some(value),
            "KeyType" => key_type = Some(value),
            _ => {}
        }
    }
    Some((id.filter(|i| !i.is_empty())?, key_type))
}

/// The property names whose values list credentials, and whether they are federated.
fn credential_property(name: &str) -> Option<bool> {
    let n = name.trim().to_ascii_lowercase();
    if n.contains("federatedidentitycredential") {
        Some(true)
    } else if n == "keydescription"
        || n.ends_with(".keydescription")
        || n == "keycredentials"
        || n == "passwordcredentials"
    {
        Some(false)
    } else {
        None
    }
}

fn audit_facts(
    activity: &str,
    inner: &RawObj<'_>,
    initiator: &Principal,
    tenant: Option<&SmolStr>,
    event_id: &SmolStr,
    time: DateTime<Utc>,
) -> Vec<LineageFact> {
    let fact = |kind| LineageFact {
        time,
        source: Source::Entra,
        event_id: event_id.clone(),
        kind,
    };
    let cred = |id: &str, kind: CredentialKind| CredentialRef {
        kind,
        id: CredentialId::new(id),
        issuer: tenant.cloned(),
    };
    let lc = activity.to_ascii_lowercase();
    let federated_activity = lc.contains("federated");
    let adds_credential = (lc.starts_with("add") && lc.contains("credential"))
        || lc.contains("certificates and secrets management");
    let removes_credential = lc.starts_with("remove") && lc.contains("credential");
    let departs = matches!(
        lc.as_str(),
        "disable account" | "delete user" | "hard delete user"
    );
    let returns = matches!(lc.as_str(), "enable account" | "restore user");
    let adds_owner = lc.starts_with("add owner to application")
        || lc.starts_with("add owner to service principal");

    let mut facts = Vec::new();
    let mut departed: Vec<SmolStr> = Vec::new();
    for t in &inner.targets.0 {
        // Credentials added or removed: diff every credential property old → new.
        let mut saw_key_property = false;
        let mut added: Vec<KeyRef> = Vec::new();
        let mut removed: Vec<KeyRef> = Vec::new();
        for p in &t.modified.0 {
            let Some(federated) = p.name.get().and_then(credential_property) else {
                continue;
            };
            saw_key_property = true;
            let federated = federated || federated_activity;
            let old = keys_in(p.old.as_ref(), federated);
            let new = keys_in(p.new.as_ref(), federated);
            for k in &new {
                if !old.iter().any(|o| o.id == k.id) && !added.iter().any(|a| a.id == k.id) {
                    added.push(k.clone());
                }
            }
            for k in &old {
                if !new.iter().any(|n| n.id == k.id) && !removed.iter().any(|r| r.id == k.id) {
                    removed.push(k.clone());
                }
            }
        }
        let fallback_kind = if federated_activity {
            CredentialKind::EntraFederatedCredential
        } else {
            CredentialKind::Unknown
        };
        let fallback_id = || s(&t.id).map(|id| format!("{id}/{activity}"));
        if !saw_key_property && adds_credential {
            if let Some(id) = fallback_id() {
                added.push(KeyRef {
                    id,
                    kind: fallback_kind,
                });
            }
        }
        if !saw_key_property && removes_credential {
            if let Some(id) = fallback_id() {
                removed.push(KeyRef {
                    id,
                    kind: fallback_kind,
                });
            }
        }
        if !added.is_empty() {
            let issued_to = app_id_of(t, inner);
            for k in added {
                facts.push(fact(FactKind::CredentialIssued {
                    parent: None,
                    child: cred(&k.id, k.kind),
                    issued_by: initiator.clone(),
                    issued_to: issued_to.clone(),
                    method: IssuanceMethod::Other,
                    session_name: None,
                    source_identity: None,
                }));
            }
        }
        for k in removed {
            facts.push(fact(FactKind::CredentialStatusChanged {
                credential: cred(&k.id, k.kind),
                status: SmolStr::new_static("Deleted"),
                changed_by: initiator.clone(),
            }));
        }

        // Accounts disabled or deleted.
        if is_user(t) {
            let disabled = t.modified.0.iter().any(|p| {
                p.name
                    .get()
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case("AccountEnabled"))
                    && is_false(p.new.as_ref())
            });
            if departs || disabled {
                if let Some(human) = user_name_of(t) {
                    if !departed.contains(&human) {
                        departed.push(human.clone());
                        facts.push(fact(FactKind::OwnerDeparted { human }));
                    }
                }
            }
            let enabled = t.modified.0.iter().any(|p| {
                p.name
                    .get()
                    .is_some_and(|n| n.trim().eq_ignore_ascii_case("AccountEnabled"))
                    && is_true(p.new.as_ref())
            });
            if (returns || enabled) && !(departs || disabled) {
                if let Some(human) = user_name_of(t) {
                    facts.push(fact(FactKind::OwnerReinstated { human }));
                }
            }
        }
    }

    if adds_owner {
        let subject = owned_app_of(inner);
        if let Some(subject) = subject {
            for t in inner.targets.0.iter().filter(|t| is_user(t)) {
                if let Some(owner) = s(&t.upn).or_else(|| s(&t.id)) {
                    facts.push(fact(FactKind::OwnerAssigned {
                        subject: subject.clone(),
                        owner,
                    }));
                }
            }
        }
    }
    facts
}

/// A user target's UPN (a deleted user's UPN has its object id, without dashes,
/// prefixed; that prefix is removed), else its object id.
fn user_name_of(t: &RawTarget<'_>) -> Option<SmolStr> {
    let id = s(&t.id);
    let Some(upn) = s(&t.upn) else {
        return id;
    };
    if let Some(id) = &id {
        let bare: String = id.chars().filter(|c| *c != '-').collect();
        if bare.len() >= 32
            && upn.len() > bare.len()
            && upn.is_char_boundary(bare.len())
            && upn[..bare.len()].eq_ignore_ascii_case(&bare)
        {
            return Some(SmolStr::new(&upn[bare.len()..]));
        }
    }
    Some(upn)
}

/// The application or service principal an owner was added to: its `appId` from the
/// `Application.AppId` / `ServicePrincipal.AppId` properties (on any target) or the
/// `AppId` additional detail, else its object id.
fn owned_app_of(inner: &RawObj<'_>) -> Option<SmolStr> {
    let prop = |suffix: &str| {
        inner.targets.0.iter().find_map(|t| {
            t.modified.0.iter().find_map(|p| {
                let name = p.name.get()?.trim().to_ascii_lowercase();
                if name == suffix.trim_start_matches('.') || name.ends_with(suffix) {
                    scalar(p.new.as_ref()).or_else(|| scalar(p.old.as_ref()))
                } else {
                    None
                }
            })
        })
    };
    prop(".appid")
        .or_else(|| detail(inner, "AppId"))
        .or_else(|| {
            inner.targets.0.iter().find_map(|t| {
                let k = t.kind.get()?.trim().to_ascii_lowercase();
                if k == "application" || k == "serviceprincipal" {
                    s(&t.id)
                } else {
                    None
                }
            })
        })
        .or_else(|| prop(".objectid"))
}
