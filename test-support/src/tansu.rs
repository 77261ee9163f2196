//! A tansu broker (Kafka protocol, in-memory storage): started from
//! `$LINEAGE_TANSU_BIN` (exported by `scripts/test.sh`) or `PATH` on a free
//! 127.0.0.1 port, killed on drop; plus a reader of a whole topic.

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;

const INSTALL_HINT: &str = "the tansu Kafka-protocol broker is needed: run \
     `scripts/services/tansu.sh install` and export LINEAGE_TANSU_BIN=<the path it prints> \
     (scripts/test.sh does both)";

fn binary() -> PathBuf {
    crate::service_binary("LINEAGE_TANSU_BIN", "tansu", INSTALL_HINT)
}

/// A tansu broker with in-memory storage; killed on drop.
pub struct Tansu {
    bin: PathBuf,
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Tansu {
    /// Starts a broker and waits until it listens.
    pub fn start() -> Self {
        Self::start_on(crate::free_port())
    }

    /// Starts a broker on `port` (a restart on the port of a stopped one).
    pub fn start_on(port: u16) -> Self {
        Self::start_with(port, "")
    }

    /// Starts a broker whose periodic maintenance (which enforces topics'
    /// `retention.ms`, a fix of `scripts/services/tansu.sh`) runs every `interval`
    /// (`1s`, say) instead of every 10 minutes.
    pub fn start_maintained_every(interval: &str) -> Self {
        Self::start_with(
            crate::free_port(),
            &format!("?maintenance_interval={interval}"),
        )
    }

    /// Starts a broker on `port` with `query` after its storage URL.
    fn start_with(port: u16, query: &str) -> Self {
        let bin = binary();
        let storage = format!("memory://tansu/{query}");
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("tansu.log")).unwrap();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .current_dir(dir.path())
            .args(["broker", "--storage-engine", &storage])
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .env_remove("SCHEMA_REGISTRY")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", bin.display()));
        let mut t = Tansu {
            bin,
            child,
            port,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = t.child.try_wait().unwrap() {
                panic!("tansu exited ({status}):\n{}", t.log());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "tansu not listening:\n{}",
                t.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates `topic` with `tansu topic create` (tansu does not auto-create topics).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let out = Command::new(&self.bin)
            .args(["topic", "create", topic])
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .args(["--partitions", &partitions.to_string()])
            .stdin(Stdio::null())
            .output()
            .expect("tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {topic}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The broker's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default()
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One message: where it is, its key, payload and headers.
#[derive(Debug)]
pub struct Msg {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key (lossy UTF-8).
    pub key: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// Headers (lossy UTF-8 values).
    pub headers: HashMap<String, String>,
}

/// Every message of `topic` (all partitions, from the start, to the end).
/// Tansu 0.6 reports a partition's high watermark as the base offset of its last
/// record batch, so the watermark alone would miss that batch: after reaching it,
/// reading goes on until no message has come for two seconds.
pub fn read_topic(brokers: &str, topic: &str) -> Vec<Msg> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "lineage-test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(20))
        .unwrap();
    let parts: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let watermarks = |c: &BaseConsumer| -> HashMap<i32, i64> {
        parts
            .iter()
            .map(|p| {
                let (_, high) = c
                    .fetch_watermarks(topic, *p, Duration::from_secs(20))
                    .unwrap();
                (*p, high)
            })
            .collect()
    };
    let mut tpl = TopicPartitionList::new();
    for p in &parts {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .unwrap();
    }
    c.assign(&tpl).unwrap();
    let want = watermarks(&c);
    let mut at: HashMap<i32, i64> = HashMap::new();
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last_message = Instant::now();
    loop {
        let behind = want
            .iter()
            .any(|(p, h)| *h > 0 && at.get(p).is_none_or(|o| o + 1 < *h));
        if !behind && last_message.elapsed() >= Duration::from_secs(2) {
            break;
        }
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            last_message = Instant::now();
            at.insert(m.partition(), m.offset());
            let mut headers = HashMap::new();
            if let Some(hs) = m.headers() {
                for h in hs.iter() {
                    headers.insert(
                        h.key.to_owned(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    );
                }
            }
            out.push(Msg {
                partition: m.partition(),
                offset: m.offset(),
                key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    out
}
