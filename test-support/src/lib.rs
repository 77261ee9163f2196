//! `lineage-test-support` holds what the tests of every crate share, once: the
//! starters of the real services the tests run against ([`Tansu`], [`Moto`],
//! [`OpenBao`]; each on a free 127.0.0.1 port, from the binary `scripts/test.sh`
//! installed and exported, killed on drop), free loopback ports, and the golden-file
//! harness ([`golden`]). A missing service fails the test with the install hint; it
//! is never skipped.
#![warn(missing_docs, unreachable_pub)]

pub mod golden;
mod moto;
mod openbao;
mod tansu;

use std::path::{Path, PathBuf};

pub use moto::{Moto, MotoClients};
pub use openbao::{file_device, socket_device, unix_socket_device, OpenBao};
pub use tansu::{read_topic, Msg, Tansu};

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The binary named by the environment variable `var` (which must exist), else
/// `name` on `PATH`; panics with `hint` when neither is there.
pub fn service_binary(var: &str, name: &str, hint: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{var}={} does not exist. {hint}", p.display());
        return p;
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{hint}"))
}

/// The last `lines` lines of a log file.
pub fn tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
