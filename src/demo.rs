//! `lineage demo` and `lineage simulate`.

use std::io::BufRead;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use lineage_core::AttributedEvent;
use lineage_pipeline::{Pipeline, Settings};
use lineage_replay::{replay, ReplayConfig};
use lineage_sim::{GroundTruth, SimConfig, SimReport};
use lineage_sinks::{render_alert, render_summary};

use crate::cli::{load_inventory, DemoArgs, SimulateArgs, EXIT_SCORE_MISSED};

/// The demo's quality bar: attribution accuracy in percent.
const MIN_ACCURACY_PCT: f64 = 99.0;

/// The bar under benign noise: at most one alert from benign activity per this many events.
const BENIGN_EVENTS_PER_ALERT: u64 = 10_000;

pub(crate) fn simulate(args: &SimulateArgs) -> Result<SimReport> {
    let cfg = SimConfig {
        seed: args.seed,
        humans: args.humans,
        agents: args.size.agents,
        days: args.size.days,
        calls_per_agent_day: args.size.calls_per_agent_day,
        force: args.force,
        noise: args.noise,
        ..SimConfig::default()
    };
    let report = lineage_sim::simulate(&cfg, &args.out).context("simulating")?;
    let per_source: Vec<String> = report
        .events_by_source
        .iter()
        .map(|(s, n)| format!("{s} {n}"))
        .collect();
    println!(
        "wrote {} records ({}) in {} files under {}\ninventory: {}\nground truth: {} ({} expected alerts)",
        report.events,
        per_source.join(", "),
        report.files,
        args.out.display(),
        report.inventory.display(),
        report.ground_truth.display(),
        report.expected_alerts
    );
    Ok(report)
}

fn read_events(path: &Path) -> Result<Vec<AttributedEvent>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    std::io::BufReader::new(file)
        .lines()
        .map(|line| {
            let line = line?;
            serde_json::from_str(&line).with_context(|| format!("reading {}", path.display()))
        })
        .collect()
}

pub(crate) fn run(args: DemoArgs) -> Result<ExitCode> {
    let temp;
    let dir = match &args.keep {
        Some(d) => d.clone(),
        None => {
            temp = tempfile::tempdir().context("creating a temporary directory")?;
            temp.path().to_owned()
        }
    };
    println!(
        "== simulating a small enterprise (seed {}) into {}",
        args.seed,
        dir.display()
    );
    let sim = simulate(&SimulateArgs {
        seed: args.seed,
        humans: 8,
        size: args.size,
        out: dir.join("sim"),
        force: false,
        noise: args.noise,
    })?;
    let out_dir = dir.join("out");
    println!(
        "\n== replaying {} (CloudTrail, Entra ID, GitHub, Vault) through parse → graph → detect → sinks",
        dir.join("sim").display()
    );
    let pipeline = Pipeline::new(Settings::default(), load_inventory(&sim.inventory)?, None);
    let output = replay(&ReplayConfig {
        pipeline: std::sync::Arc::new(pipeline),
        inputs: sim
            .log_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect(),
        source: None,
        out_dir: out_dir.clone(),
        write_events: true,
        threads: 0,
        respond: false,
        detector_state: None,
        sweep_owner: None,
        tables: Some(out_dir.join(lineage_tables::TABLES_DIR)),
        archive: Default::default(),
    })
    .context("replaying the simulated logs")?;
    print!("{}", render_summary(&output.summary));

    println!("\n== top alerts");
    let mut alerts = output.alerts.clone();
    alerts.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.count.cmp(&a.count)));
    for a in alerts.iter().take(args.show_alerts) {
        print!("{}", render_alert(a));
    }

    let truth: GroundTruth = serde_json::from_slice(
        &std::fs::read(&sim.ground_truth)
            .with_context(|| format!("reading {}", sim.ground_truth.display()))?,
    )
    .context("parsing the ground truth")?;
    let events = read_events(&out_dir.join("events.jsonl"))?;
    let score = lineage_sim::score(&truth, &events, &output.alerts);
    println!("\n== score against the simulator's ground truth");
    println!(
        "attribution accuracy: {:.2}% ({} of {} events; {} missing)",
        score.attribution_accuracy_pct, score.correct, score.expected_events, score.missing
    );
    for (id, expected, got) in &score.wrong_examples {
        println!("  wrong: {id}: expected {expected}, got {got}");
    }
    for d in &score.detectors {
        println!(
            "detector {:<14} recall {:.0}% ({}/{}), precision {:.0}%, {} false positives of {} alerts",
            d.detector,
            100.0 * d.recall,
            d.found,
            d.expected,
            100.0 * d.precision,
            d.false_positives,
            d.raised
        );
    }
    std::fs::write(
        dir.join("score.json"),
        serde_json::to_string_pretty(&score)?,
    )?;
    let benign = score.benign_alerts();
    println!(
        "alerts: {} for {} events ({:.0} per million); {benign} from benign activity",
        output.alerts.len(),
        sim.events,
        output.alerts.len() as f64 * 1e6 / sim.events.max(1) as f64,
    );
    if args.noise {
        let max_benign = (sim.events / BENIGN_EVENTS_PER_ALERT).max(1) as usize;
        return Ok(if score.meets_under_noise(MIN_ACCURACY_PCT, max_benign) {
            println!("demo: PASS under benign noise (attribution ≥ {MIN_ACCURACY_PCT}%, every seeded alert found, {benign} ≤ {max_benign} alerts from benign activity)");
            ExitCode::SUCCESS
        } else {
            println!("demo: MISSED its targets under benign noise (attribution ≥ {MIN_ACCURACY_PCT}%, recall 100%, at most {max_benign} alerts from benign activity)");
            ExitCode::from(EXIT_SCORE_MISSED)
        });
    }
    if score.meets(MIN_ACCURACY_PCT) {
        println!("demo: PASS (attribution ≥ {MIN_ACCURACY_PCT}%, every seeded alert found, no false positives)");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("demo: MISSED its targets (attribution ≥ {MIN_ACCURACY_PCT}%, recall 100%, no false positives)");
        Ok(ExitCode::from(EXIT_SCORE_MISSED))
    }
}
