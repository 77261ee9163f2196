//! `lineage demo` and `lineage simulate`.

use std::process::ExitCode;

use anyhow::Result;

use crate::cli::{DemoArgs, SimulateArgs};

pub(crate) fn simulate(_args: &SimulateArgs) -> Result<()> {
    anyhow::bail!("simulator not wired yet")
}

pub(crate) fn run(_args: DemoArgs) -> Result<ExitCode> {
    anyhow::bail!("demo not wired yet")
}
