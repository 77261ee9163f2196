//! Typed identifiers. They are `SmolStr`-backed: AWS access key ids (20 bytes),
//! GitHub token ids and Vault accessors fit inline, so cloning an id never allocates
//! on the hot path.

use serde::{Deserialize, Serialize};
use smol_str::SmolStr;
use std::fmt;

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub SmolStr);

        impl $name {
            /// Wraps an identifier string.
            pub fn new(id: impl AsRef<str>) -> Self {
                Self(SmolStr::new(id.as_ref()))
            }
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                self.0.as_str()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self::new(s)
            }
        }
    };
}

typed_id!(
    /// A credential: AWS access key id, GitHub token id, Vault accessor, Entra key id.
    CredentialId
);
typed_id!(
    /// A non-human identity declared in the inventory (an AI agent, MCP server, CI runner or service).
    AgentId
);
typed_id!(
    /// An accountable human declared in the inventory.
    HumanId
);
