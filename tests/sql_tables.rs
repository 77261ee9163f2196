//! Lineage tables and `lineage sql` end to end: a simulated estate is replayed into
//! Parquet tables, which are read back with the `parquet` crate alone (row counts
//! against `summary.json`), queried with `lineage sql` (the README's example
//! queries, with answers derived from the simulator's ground truth) and served to
//! `psql` over the Postgres wire protocol.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::Value;

struct Fixture {
    sim: PathBuf,
    out: PathBuf,
    tables: PathBuf,
}

/// One simulated estate (9 days, so weeks and "the last 7 days" mean something),
/// replayed once for every test of this file.
///
/// A static is never dropped, so a `TempDir` here would leave 30 MB in the system's
/// temporary folder on every run. The fixture lives under Cargo's per-target scratch
/// folder instead, replaced on each run and removed by `cargo clean`.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("sql_tables-fixture");
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        let sim = dir.join("sim");
        let out = dir.join("out");
        let status = lineage()
            .args(["simulate", "--seed", "5", "--humans", "6", "--agents", "9"])
            .args(["--days", "9", "--calls-per-agent-day", "60", "--out"])
            .arg(&sim)
            .output()
            .unwrap();
        common::assert_exit(&status, 0);
        let logs: Vec<PathBuf> = std::fs::read_dir(&sim)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        assert!(!logs.is_empty());
        let inputs: Vec<&Path> = logs.iter().map(|p| p.as_path()).collect();
        let inventory = sim.join("inventory.toml");
        let run = common::replay(
            &inputs,
            &out,
            &["--inventory", inventory.to_str().unwrap(), "--events"],
        );
        common::assert_exit(&run, 0);
        let tables = out.join("tables");
        Fixture { sim, out, tables }
    })
}

fn lineage() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lineage"));
    cmd.env_remove("LINEAGE_LOG");
    cmd
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(parquet_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Every row of a table, read with the `parquet` crate only, as column → value.
fn read_table(tables: &Path, table: &str) -> Vec<HashMap<String, Field>> {
    let mut rows = Vec::new();
    for path in parquet_files(&tables.join(table)) {
        let name = path.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("part-") && name.ends_with(".parquet"),
            "unexpected file {}",
            path.display()
        );
        let partition = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert!(partition.starts_with("date="), "{}", path.display());
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        let declared = reader.metadata().file_metadata().num_rows() as usize;
        let before = rows.len();
        for row in reader.get_row_iter(None).unwrap() {
            let row = row.unwrap();
            rows.push(
                row.get_column_iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            );
        }
        assert_eq!(rows.len() - before, declared);
    }
    rows
}

fn text(row: &HashMap<String, Field>, column: &str) -> Option<String> {
    match row.get(column) {
        Some(Field::Str(s)) => Some(s.clone()),
        Some(Field::Null) | None => None,
        Some(other) => panic!("{column} is not text: {other:?}"),
    }
}

fn time(row: &HashMap<String, Field>, column: &str) -> DateTime<Utc> {
    match row.get(column) {
        Some(Field::TimestampMicros(us)) => Utc.timestamp_micros(*us).unwrap(),
        other => panic!("{column} is not a timestamp: {other:?}"),
    }
}

fn flag(row: &HashMap<String, Field>, column: &str) -> bool {
    match row.get(column) {
        Some(Field::Bool(b)) => *b,
        other => panic!("{column} is not a boolean: {other:?}"),
    }
}

/// What the logs say about one event (never its attribution).
struct Observed {
    time: DateTime<Utc>,
    credential: Option<String>,
    service: String,
    long_lived: bool,
}

fn observed(tables: &Path) -> HashMap<String, Observed> {
    read_table(tables, "events")
        .into_iter()
        .map(|r| {
            (
                text(&r, "event_id").unwrap(),
                Observed {
                    time: time(&r, "time"),
                    credential: text(&r, "credential_id"),
                    service: text(&r, "service").unwrap(),
                    long_lived: flag(&r, "long_lived"),
                },
            )
        })
        .collect()
}

fn truth(f: &Fixture) -> Value {
    serde_json::from_slice(&std::fs::read(f.sim.join("ground_truth.json")).unwrap()).unwrap()
}

/// `lineage sql --format csv QUERY` as rows of cells (the example queries return
/// no commas or quotes in their cells).
fn sql_rows(f: &Fixture, query: &str) -> Vec<Vec<String>> {
    let out = lineage()
        .args(["sql", "--format", "csv", "--tables"])
        .arg(&f.tables)
        .arg(query)
        .output()
        .unwrap();
    common::assert_exit(&out, 0);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[test]
fn parquet_tables_match_the_summary() {
    let f = fixture();
    let summary = common::summary(&f.out);
    let n = |k: &str| summary[k].as_u64().unwrap() as usize;
    let events = read_table(&f.tables, "events");
    let jsonl = common::jsonl(&f.out.join("events.jsonl"));
    assert!(events.len() > 1000, "{} events", events.len());
    assert_eq!(events.len(), jsonl.len());
    assert_eq!(
        events.len(),
        n("attributed") + n("unattributed") + n("service_events")
    );
    let attributed = events
        .iter()
        .filter(|r| text(r, "agent").is_some() || text(r, "owner").is_some())
        .count();
    assert_eq!(attributed, n("attributed"));
    assert_eq!(read_table(&f.tables, "alerts").len(), n("alerts"), "alerts");
    assert_eq!(
        read_table(&f.tables, "actions").len(),
        n("actions_requested"),
        "actions"
    );
    assert_eq!(
        read_table(&f.tables, "dead_letters").len(),
        n("dead_lettered"),
        "dead letters"
    );
    // Every credential used appears in `credentials`; every inventory identity in `identities`.
    let used: BTreeSet<String> = events
        .iter()
        .filter_map(|r| text(r, "credential_id"))
        .collect();
    let known: BTreeSet<String> = read_table(&f.tables, "credentials")
        .iter()
        .map(|r| text(r, "credential_id").unwrap())
        .collect();
    assert!(used.is_subset(&known));
    let inventory = std::fs::read_to_string(f.sim.join("inventory.toml")).unwrap();
    let identities = read_table(&f.tables, "identities");
    assert_eq!(
        identities.len(),
        inventory.matches("[[human]]").count() + inventory.matches("[[agent]]").count()
    );
    assert!(!read_table(&f.tables, "edges").is_empty());
    // Events sit in the partition of their own date.
    for path in parquet_files(&f.tables.join("events")) {
        let date = path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()[5..]
            .to_owned();
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        // Random ids are written plain, without statistics; columns queries filter on
        // keep their min/max for pruning; other text columns have none.
        for group in reader.metadata().row_groups() {
            for column in group.columns() {
                match column.column_descr().name() {
                    name @ ("event_id" | "provenance") => {
                        assert!(column.dictionary_page_offset().is_none(), "{name}");
                        assert!(column.statistics().is_none(), "{name}");
                        // Provenance (file path, then record number) is prefix-coded.
                        let prefixed = column
                            .encodings()
                            .any(|e| e == parquet::basic::Encoding::DELTA_BYTE_ARRAY);
                        assert_eq!(prefixed, name == "provenance", "{name}");
                    }
                    name @ ("time" | "credential_id" | "agent") => {
                        assert!(column.statistics().is_some(), "{name}");
                        // Event times (nearly all distinct, rising) are delta-coded,
                        // not put in a dictionary.
                        let delta = column
                            .encodings()
                            .any(|e| e == parquet::basic::Encoding::DELTA_BINARY_PACKED);
                        assert_eq!(delta, name == "time", "{name}");
                        if name == "time" {
                            assert!(column.dictionary_page_offset().is_none(), "{name}");
                        }
                    }
                    // Text in no useful order: no min/max to compute per value.
                    name @ ("user_agent" | "principal_arn" | "session_issuer" | "action") => {
                        assert!(column.statistics().is_none(), "{name}");
                    }
                    _ => {}
                }
            }
        }
        for row in reader.get_row_iter(None).unwrap() {
            let row: HashMap<String, Field> = row
                .unwrap()
                .get_column_iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(time(&row, "time").format("%Y-%m-%d").to_string(), date);
        }
    }
}

// The README's example queries (sql/README-tables.md), with a placeholder for the
// key or agent asked about.

/// Who owns access key X, and through which chain?
const WHO_OWNS: &str =
    "SELECT credential_id, agent, owner, array_to_string(chain, ' -> ') AS chain \
     FROM credentials WHERE credential_id = '{X}'";
/// Blast radius of agent Y: every service it reached, with calls and credentials used.
const BLAST_RADIUS: &str =
    "SELECT service, count(*) AS calls, count(DISTINCT credential_id) AS credentials \
     FROM events WHERE agent = '{Y}' GROUP BY service ORDER BY service";
/// Every credential of a departed owner still used in the last 7 days of the data.
const DEPARTED_STILL_USED: &str = "SELECT e.owner, e.credential_id, count(*) AS uses \
     FROM events e JOIN identities i ON i.id = e.owner AND i.identity_type = 'human' \
     WHERE i.status = 'departed' AND e.time >= i.departed_at \
       AND e.time > (SELECT max(time) FROM events) - INTERVAL '7 days' \
       AND e.credential_id IS NOT NULL \
     GROUP BY e.owner, e.credential_id ORDER BY e.owner, e.credential_id";
/// Agents using long-lived keys, ranked by use.
const LONG_LIVED_RANKING: &str =
    "SELECT agent, count(*) AS uses, count(DISTINCT credential_id) AS keys \
     FROM events WHERE long_lived AND agent IS NOT NULL \
     GROUP BY agent ORDER BY uses DESC, agent";
/// Alerts per owner per week.
const ALERTS_PER_OWNER_WEEK: &str =
    "SELECT owner, CAST(CAST(date_trunc('week', first_seen) AS DATE) AS VARCHAR) AS week, \
     count(*) AS alerts FROM alerts WHERE owner IS NOT NULL \
     GROUP BY owner, week ORDER BY owner, week";

/// The example queries with their expected rows (as text cells), derived from the
/// ground truth (who did what) and the logs (which key, when, which service).
fn examples(f: &Fixture) -> Vec<(String, Vec<Vec<String>>)> {
    let truth = truth(f);
    let seen = observed(&f.tables);
    let attribution = |id: &str| -> Option<(Option<String>, Option<String>)> {
        let a = truth["attributions"].get(id)?;
        Some((
            a["agent"].as_str().map(str::to_owned),
            a["owner"].as_str().map(str::to_owned),
        ))
    };
    let mut out = Vec::new();

    // 1. A session key issued from another key: its chain comes from the raw
    //    CloudTrail STS records, its owner from the ground truth.
    let parents = sts_parents(&f.sim);
    let (key, chain) = parents
        .keys()
        .map(|k| (k.clone(), chain_of(&parents, k)))
        .filter(|(k, c)| c.len() >= 2 && seen.values().any(|o| o.credential.as_deref() == Some(k)))
        .max_by_key(|(k, c)| (c.len(), k.clone()))
        .expect("a used session key issued from another key");
    let owners: BTreeSet<(Option<String>, Option<String>)> = seen
        .iter()
        .filter(|(_, o)| o.credential.as_deref() == Some(key.as_str()))
        .filter_map(|(id, _)| attribution(id))
        .collect();
    assert_eq!(owners.len(), 1, "{key} has one owner: {owners:?}");
    let (agent, owner) = owners.into_iter().next().unwrap();
    out.push((
        WHO_OWNS.replace("{X}", &key),
        vec![vec![
            key.clone(),
            agent.unwrap_or_default(),
            owner.unwrap_or_default(),
            chain.join(" -> "),
        ]],
    ));

    // 2. The busiest agent's reach.
    let mut per_agent: BTreeMap<String, usize> = BTreeMap::new();
    for id in seen.keys() {
        if let Some((Some(a), _)) = attribution(id) {
            *per_agent.entry(a).or_default() += 1;
        }
    }
    let busiest = per_agent
        .iter()
        .max_by_key(|(a, n)| (**n, (*a).clone()))
        .unwrap()
        .0
        .clone();
    let mut by_service: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
    for (id, o) in &seen {
        if attribution(id).is_some_and(|(a, _)| a.as_deref() == Some(busiest.as_str())) {
            let e = by_service.entry(o.service.clone()).or_default();
            e.0 += 1;
            e.1.extend(o.credential.clone());
        }
    }
    out.push((
        BLAST_RADIUS.replace("{Y}", &busiest),
        by_service
            .into_iter()
            .map(|(svc, (calls, creds))| vec![svc, calls.to_string(), creds.len().to_string()])
            .collect(),
    ));

    // 3. The departed owner (the simulator's departed-owner alert names them; the
    //    first event after the departure marks it) and their keys used since, in
    //    the data's last 7 days.
    let max_time = seen.values().map(|o| o.time).max().unwrap();
    let mut departed: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    for a in truth["alerts"].as_array().unwrap() {
        if a["detector"] == "departed-owner" {
            let first = a["event_ids"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|id| seen.get(id.as_str().unwrap()).map(|o| o.time))
                .min()
                .unwrap();
            let e = departed
                .entry(a["owner"].as_str().unwrap().to_owned())
                .or_insert(first);
            *e = (*e).min(first);
        }
    }
    assert!(!departed.is_empty(), "the simulation has a departed owner");
    let mut still_used: BTreeMap<(String, String), usize> = BTreeMap::new();
    for (id, o) in &seen {
        let Some((_, Some(owner))) = attribution(id) else {
            continue;
        };
        let Some(&since) = departed.get(&owner) else {
            continue;
        };
        let Some(cred) = &o.credential else { continue };
        if o.time >= since && o.time > max_time - Duration::days(7) {
            *still_used.entry((owner, cred.clone())).or_default() += 1;
        }
    }
    assert!(!still_used.is_empty());
    out.push((
        DEPARTED_STILL_USED.to_owned(),
        still_used
            .into_iter()
            .map(|((o, c), n)| vec![o, c, n.to_string()])
            .collect(),
    ));

    // 4. Agents on long-lived keys.
    let mut ranking: BTreeMap<String, (usize, BTreeSet<String>)> = BTreeMap::new();
    for (id, o) in &seen {
        if let (Some((Some(agent), _)), true) = (attribution(id), o.long_lived) {
            let e = ranking.entry(agent).or_default();
            e.0 += 1;
            e.1.extend(o.credential.clone());
        }
    }
    let mut ranking: Vec<(String, usize, usize)> = ranking
        .into_iter()
        .map(|(a, (n, k))| (a, n, k.len()))
        .collect();
    ranking.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert!(!ranking.is_empty());
    out.push((
        LONG_LIVED_RANKING.to_owned(),
        ranking
            .into_iter()
            .map(|(a, n, k)| vec![a, n.to_string(), k.to_string()])
            .collect(),
    ));

    // 5. Alerts per owner and week (Monday) of their first evidence event. The
    //    detectors may split one expected finding into several alerts (one per
    //    credential) or add findings the simulator did not seed, so the counts come
    //    from alerts.jsonl (the detectors' own output, not the tables), and every
    //    alert the ground truth expects must be counted in its owner's week.
    let monday = |t: DateTime<Utc>| {
        (t.date_naive() - Duration::days(t.weekday().num_days_from_monday() as i64)).to_string()
    };
    let mut weekly: BTreeMap<(String, String), usize> = BTreeMap::new();
    for a in common::jsonl(&f.out.join("alerts.jsonl")) {
        let Some(owner) = a["owner"].as_str() else {
            continue;
        };
        let first: DateTime<Utc> = a["first_seen"].as_str().unwrap().parse().unwrap();
        *weekly.entry((owner.to_owned(), monday(first))).or_default() += 1;
    }
    let mut expected: BTreeMap<(String, String), usize> = BTreeMap::new();
    for a in truth["alerts"].as_array().unwrap() {
        let first = a["event_ids"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|id| seen.get(id.as_str().unwrap()).map(|o| o.time))
            .min()
            .unwrap();
        *expected
            .entry((a["owner"].as_str().unwrap().to_owned(), monday(first)))
            .or_default() += 1;
    }
    for (key, n) in &expected {
        assert!(
            weekly.get(key).is_some_and(|m| m >= n),
            "ground truth expects {n} alert(s) for {key:?}; raised: {weekly:?}"
        );
    }
    out.push((
        ALERTS_PER_OWNER_WEEK.to_owned(),
        weekly
            .into_iter()
            .map(|((o, w), n)| vec![o, w, n.to_string()])
            .collect(),
    ));
    out
}

/// Child session key → the key whose call issued it, from the raw CloudTrail records.
fn sts_parents(sim: &Path) -> HashMap<String, String> {
    let mut parents = HashMap::new();
    let mut stack = vec![sim.join("AWSLogs")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if !p.to_string_lossy().ends_with(".json.gz") {
                continue;
            }
            let file = flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap());
            let doc: Value = serde_json::from_reader(file).unwrap();
            for r in doc["Records"].as_array().unwrap() {
                let child = r["responseElements"]["credentials"]["accessKeyId"].as_str();
                let parent = r["userIdentity"]["accessKeyId"].as_str();
                if let (Some(c), Some(p)) = (child, parent) {
                    parents.insert(c.to_owned(), p.to_owned());
                }
            }
        }
    }
    parents
}

fn chain_of(parents: &HashMap<String, String>, key: &str) -> Vec<String> {
    let mut chain = vec![key.to_owned()];
    while let Some(p) = parents.get(chain.last().unwrap()) {
        if chain.contains(p) {
            break;
        }
        chain.push(p.clone());
    }
    chain
}

#[test]
fn example_queries_answer_from_the_ground_truth() {
    let f = fixture();
    for (query, expected) in examples(f) {
        assert_eq!(sql_rows(f, &query), expected, "query: {query}");
    }
}

/// `lineage sql --serve` on a free port; stopped on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(f: &Fixture, password: Option<&str>) -> Server {
    serve_with(f, password, &[])
}

fn serve_with(f: &Fixture, password: Option<&str>, extra: &[&str]) -> Server {
    let mut cmd = lineage();
    cmd.args(["sql", "--serve", "127.0.0.1:0", "--tables"])
        .arg(&f.tables)
        .args(extra);
    if let Some(p) = password {
        cmd.args(["--password-env", "LINEAGE_TEST_PG_PASSWORD"])
            .env("LINEAGE_TEST_PG_PASSWORD", p);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .strip_prefix("listening on ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    Server { child, port }
}

fn psql(server: &Server, password: Option<&str>, query: &str) -> std::process::Output {
    psql_with(server, password, "dbname=lineage sslmode=disable", query)
}

/// `psql` with a libpq connection string (`dbname=… sslmode=…`) for the server.
fn psql_with(
    server: &Server,
    password: Option<&str>,
    conninfo: &str,
    query: &str,
) -> std::process::Output {
    psql_at(server.port, password, conninfo, query)
}

/// `psql` against the server on `port` (errors with their SQLSTATE).
fn psql_at(port: u16, password: Option<&str>, conninfo: &str, query: &str) -> std::process::Output {
    let mut cmd = Command::new("psql");
    cmd.args(["-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1"])
        .args(["-v", "VERBOSITY=verbose"])
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-U", "analyst", "-d", conninfo, "-c", query])
        .env_remove("PGSERVICE")
        .env("PGCONNECT_TIMEOUT", "10");
    match password {
        Some(p) => cmd.env("PGPASSWORD", p),
        None => cmd.env_remove("PGPASSWORD"),
    };
    cmd.output().expect("psql runs")
}

#[test]
fn psql_runs_the_example_queries_over_the_wire() {
    let f = fixture();
    let server = serve(f, Some("s3cret-test-pw"));
    for (query, expected) in examples(f) {
        let out = psql(&server, Some("s3cret-test-pw"), &query);
        common::assert_exit(&out, 0);
        let rows: Vec<Vec<String>> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| l.split('|').map(str::to_owned).collect())
            .collect();
        assert_eq!(rows, expected, "query over psql: {query}");
    }
    // A wrong password is refused.
    let out = psql(&server, Some("wrong"), "SELECT 1");
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("password authentication failed"), "{err}");
    // Read-only: DDL and DML are refused, the tables stay as they were.
    for stmt in [
        "CREATE TABLE x (a INT)",
        "DROP TABLE events",
        "INSERT INTO alerts (id) VALUES ('x')",
        "COPY events TO '/tmp/lineage-events-copy.csv'",
    ] {
        let out = psql(&server, Some("s3cret-test-pw"), stmt);
        assert_ne!(out.status.code(), Some(0), "{stmt} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("read-only"), "{stmt}: {err}");
    }
    // SET of the shared engine's settings is refused; what clients send on connect
    // is accepted.
    for stmt in [
        "SET datafusion.runtime.memory_limit = '1G'",
        "SET datafusion.execution.target_partitions = 1",
    ] {
        let out = psql(&server, Some("s3cret-test-pw"), stmt);
        assert_ne!(out.status.code(), Some(0), "{stmt} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("shared by every connection"), "{stmt}: {err}");
    }
    let out = psql(
        &server,
        Some("s3cret-test-pw"),
        "SET application_name = 'grafana'",
    );
    common::assert_exit(&out, 0);
    let out = psql(
        &server,
        Some("s3cret-test-pw"),
        "SELECT count(*) FROM events",
    );
    common::assert_exit(&out, 0);
    let n: usize = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, observed(&f.tables).len());
}

fn test_tls_file(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/tls")
        .join(name)
        .display()
        .to_string()
}

/// TLS with SCRAM-SHA-256 bound to the certificate: libpq's `channel_binding=require`
/// only succeeds with SCRAM-SHA-256-PLUS over TLS (MD5 or a plain connection
/// fail it), and `sslmode=verify-full` checks the server's certificate.
#[test]
fn psql_connects_with_scram_over_tls_and_plain_text_is_refused() {
    let f = fixture();
    let (cert, key) = (test_tls_file("server.crt"), test_tls_file("server.key"));
    let server = serve_with(
        f,
        Some("s3cret-test-pw"),
        &["--tls-cert", &cert, "--tls-key", &key],
    );
    let secure =
        format!("dbname=lineage sslmode=verify-full sslrootcert={cert} channel_binding=require");
    let out = psql_with(
        &server,
        Some("s3cret-test-pw"),
        &secure,
        "SELECT count(*) FROM events",
    );
    common::assert_exit(&out, 0);
    let n: usize = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(n, observed(&f.tables).len());
    // The wrong password over the same channel is refused.
    let out = psql_with(&server, Some("wrong"), &secure, "SELECT 1");
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("password authentication failed"), "{err}");
    // Plain text is refused before authentication.
    let out = psql_with(
        &server,
        Some("s3cret-test-pw"),
        "dbname=lineage sslmode=disable",
        "SELECT 1",
    );
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only accepts TLS"), "{err}");
    // Without TLS on the server, channel binding cannot be had: the check above is
    // not satisfied by SCRAM alone.
    let plain = serve(f, Some("s3cret-test-pw"));
    let out = psql_with(
        &plain,
        Some("s3cret-test-pw"),
        "dbname=lineage sslmode=disable channel_binding=require",
        "SELECT 1",
    );
    assert_ne!(out.status.code(), Some(0));
    let out = psql_with(
        &plain,
        Some("s3cret-test-pw"),
        "dbname=lineage sslmode=disable channel_binding=disable",
        "SELECT 1",
    );
    common::assert_exit(&out, 0);
}

/// A query that would run for ever stops at the statement timeout with SQLSTATE
/// 57014, and the server answers another connection meanwhile and afterwards.
#[test]
fn a_runaway_query_stops_at_the_statement_timeout_and_the_server_keeps_serving() {
    let f = fixture();
    // Long enough that the other connection's query is sure to be answered while
    // the runaway one still runs, however loaded the machine is.
    let server = serve_with(f, None, &["--statement-timeout", "15"]);
    let port = server.port;
    let runaway = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        // Every event against a billion generated rows: hours of work in little
        // memory (a plain count(*) of a cross join is answered from statistics).
        let out = psql_at(
            port,
            None,
            "dbname=lineage sslmode=disable",
            "SELECT count(*) FROM events a CROSS JOIN range(1000000000) r WHERE a.event_id <> CAST(r.value AS VARCHAR)",
        );
        (out, started.elapsed(), std::time::Instant::now())
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = psql(&server, None, "SELECT count(*) FROM identities");
    common::assert_exit(&out, 0);
    let answered = std::time::Instant::now();
    let (out, took, runaway_ended) = runaway.join().unwrap();
    assert!(
        answered < runaway_ended,
        "the other connection was answered only after the runaway query ended"
    );
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("57014") && err.contains("statement timeout"),
        "{err}"
    );
    // Stopped by the timeout, not by finishing hours of work.
    assert!(took < std::time::Duration::from_secs(120), "{took:?}");
    let out = psql(&server, None, "SELECT count(*) FROM identities");
    common::assert_exit(&out, 0);
}

/// The memory pool refuses a query that needs more than `--memory-limit-mib`
/// (nothing spills), and `dead_letters.original` is hidden unless asked for.
#[test]
fn queries_stay_inside_the_memory_limit_and_dead_letter_bytes_are_opt_in() {
    let f = fixture();
    let out = lineage()
        .args(["sql", "--memory-limit-mib", "1", "--tables"])
        .arg(&f.tables)
        .arg("SELECT a.event_id, b.event_id FROM events a, events b ORDER BY a.event_id, b.event_id LIMIT 5 OFFSET 100000")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Resources exhausted"), "{err}");

    let columns = "SELECT column_name FROM information_schema.columns WHERE table_name = 'dead_letters' ORDER BY column_name";
    let list = |extra: &[&str]| {
        let out = lineage()
            .args(["sql", "--format", "csv", "--tables"])
            .arg(&f.tables)
            .args(extra)
            .arg(columns)
            .output()
            .unwrap();
        common::assert_exit(&out, 0);
        String::from_utf8(out.stdout).unwrap()
    };
    let hidden = list(&[]);
    assert!(hidden.contains("reason"), "{hidden}");
    assert!(
        !hidden
            .lines()
            .any(|l| l == "original" || l == "original_base64"),
        "{hidden}"
    );
    assert!(hidden.contains("original_len"), "{hidden}");
    let shown = list(&["--dead-letter-bytes"]);
    assert!(shown.lines().any(|l| l == "original"), "{shown}");
    assert!(shown.lines().any(|l| l == "original_base64"), "{shown}");
    let out = lineage()
        .args(["sql", "--tables"])
        .arg(&f.tables)
        .arg("SELECT original FROM dead_letters")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
}

#[test]
fn serving_beyond_loopback_without_a_password_is_refused_at_start() {
    let f = fixture();
    let out = lineage()
        .args(["sql", "--serve", "0.0.0.0:0", "--tables"])
        .arg(&f.tables)
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without a password"), "{err}");
}

#[test]
fn sql_prints_table_csv_and_json_and_fails_clearly() {
    let f = fixture();
    let query = "SELECT id, identity_type FROM identities WHERE identity_type = 'human' ORDER BY id LIMIT 2";
    let run = |format: &str| {
        let out = lineage()
            .args(["sql", "--format", format, "--tables"])
            .arg(&f.tables)
            .arg(query)
            .output()
            .unwrap();
        common::assert_exit(&out, 0);
        String::from_utf8(out.stdout).unwrap()
    };
    let json: Vec<Value> = run("json")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json.len(), 2);
    let ids: Vec<String> = json.iter().map(|r| s(&r["id"])).collect();
    assert!(json.iter().all(|r| r["identity_type"] == "human"));
    let csv = run("csv");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "id,identity_type");
    assert_eq!(
        lines[1..],
        [format!("{},human", ids[0]), format!("{},human", ids[1])]
    );
    let table = run("table");
    assert!(table.lines().next().unwrap().starts_with("+-"), "{table}");
    assert!(
        table.contains("| id ") && table.contains(&ids[0]) && table.contains(&ids[1]),
        "{table}"
    );

    let bad = lineage()
        .args(["sql", "--tables"])
        .arg(&f.tables)
        .arg("SELECT nope FROM events")
        .output()
        .unwrap();
    common::assert_exit(&bad, 1);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.starts_with("error:") && err.contains("nope"), "{err}");
    let ddl = lineage()
        .args(["sql", "--tables"])
        .arg(&f.tables)
        .arg("CREATE TABLE t AS SELECT * FROM events")
        .output()
        .unwrap();
    common::assert_exit(&ddl, 1);
    // The shell reads queries from stdin and keeps going after an error.
    let mut shell = lineage()
        .args(["sql", "--format", "csv", "--tables"])
        .arg(&f.tables)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    shell
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT broken FROM nowhere;\nSELECT count(*) AS n FROM identities WHERE identity_type = 'human';\n")
        .unwrap();
    let out = shell.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("n\n"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("error:"));
}
