//! The broker's own ceiling for the Kafka path's message flow, with no lineage work:
//! what `lineage run`'s Kafka throughput is compared against.
//!
//! `cargo bench --bench kafka_ceiling -- --brokers HOST:PORT [--records N] [--batch 2000] [--json FILE]`
//!
//! Expects the raw topics filled by `lineage ingest` (as `scripts/bench_kafka.sh`
//! does). Two relays run at once, each a consumer group with manual commits and an
//! idempotent `acks=all` producer (`linger.ms=5`), the settings of the pipeline's
//! stages:
//!
//! 1. *normalize's hops*: every raw record is consumed and produced again, same key
//!    and bytes, to a scratch events topic (6 partitions, keyed as read), flushed and
//!    committed per batch;
//! 2. *graph's hop*: the scratch events topic is consumed and committed per batch.
//!
//! The time is from the first raw record consumed to the last event consumed, so the
//! rate is the broker's (here: tansu on the same two cores) for the same topics,
//! message sizes and hops. Not measured: identity facts and watermarks (a few per
//! batch) and the alert/action/DLQ hops (a few hundred messages per run).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;

const RAW: [&str; 4] = [
    "lineage.raw.cloudtrail",
    "lineage.raw.entra",
    "lineage.raw.github",
    "lineage.raw.vault",
];

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn consumer(brokers: &str, group: &str, topics: &[&str]) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer");
    c.subscribe(topics).expect("subscribe");
    c
}

fn end_offsets(c: &BaseConsumer, topics: &[&str]) -> i64 {
    let md = c
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let mut total = 0;
    for t in md.topics().iter().filter(|t| topics.contains(&t.name())) {
        for p in t.partitions() {
            let (lo, hi) = c
                .fetch_watermarks(t.name(), p.id(), Duration::from_secs(10))
                .expect("watermarks");
            total += hi - lo;
        }
    }
    total
}

fn commit(c: &BaseConsumer, next: &HashMap<(String, i32), i64>) {
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in next {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o)).unwrap();
    }
    c.commit(&tpl, CommitMode::Sync).expect("commit");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let brokers = arg(&args, "--brokers").expect("--brokers HOST:PORT");
    let batch: usize = arg(&args, "--batch").map_or(2000, |b| b.parse().expect("--batch N"));
    let json = arg(&args, "--json");
    let run = format!("ceiling-{}", std::process::id());
    let events_topic = format!("{run}.events");

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .expect("admin");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(admin.create_topics(
        [&NewTopic::new(&events_topic, 6, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(20))),
    ))
    .expect("create topic");

    // The count `lineage ingest` reported: a broker whose high watermark lags its last
    // batch (tansu 0.6) would understate it.
    let want = match arg(&args, "--records") {
        Some(n) => n.parse().expect("--records N"),
        None => end_offsets(&consumer(&brokers, &format!("{run}.probe"), &RAW), &RAW),
    };
    eprintln!("kafka_ceiling: relaying {want} raw records through {events_topic}");

    let relay = std::thread::spawn({
        let brokers = brokers.clone();
        let run = run.clone();
        let events_topic = events_topic.clone();
        move || -> Instant {
            let c = consumer(&brokers, &format!("{run}.relay"), &RAW);
            let p: BaseProducer = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("enable.idempotence", "true")
                .set("acks", "all")
                .set("linger.ms", "5")
                .create()
                .expect("producer");
            let mut first = None;
            let mut done = 0i64;
            while done < want {
                let mut next = HashMap::new();
                let mut n = 0;
                while n < batch {
                    match c.poll(Duration::from_millis(if n == 0 { 500 } else { 10 })) {
                        Some(Ok(m)) => {
                            first.get_or_insert_with(Instant::now);
                            let mut rec = BaseRecord::to(&events_topic)
                                .payload(m.payload().unwrap_or_default());
                            if let Some(k) = m.key() {
                                rec = rec.key(k);
                            }
                            let mut rec = rec;
                            loop {
                                match p.send(rec) {
                                    Ok(()) => break,
                                    Err((_, r)) => {
                                        rec = r;
                                        p.poll(Duration::from_millis(5));
                                    }
                                }
                            }
                            next.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
                            n += 1;
                        }
                        Some(Err(e)) => eprintln!("relay: {e}"),
                        None => break,
                    }
                }
                p.flush(Duration::from_secs(60)).expect("flush");
                if !next.is_empty() {
                    commit(&c, &next);
                }
                done += n as i64;
            }
            first.expect("relayed something")
        }
    });
    let c = consumer(&brokers, &format!("{run}.sink"), &[&events_topic]);
    let mut got = 0i64;
    let mut last = Instant::now();
    while got < want {
        let mut next = HashMap::new();
        let mut n = 0;
        while n < batch {
            match c.poll(Duration::from_millis(if n == 0 { 500 } else { 10 })) {
                Some(Ok(m)) => {
                    next.insert((m.topic().to_owned(), m.partition()), m.offset() + 1);
                    n += 1;
                }
                Some(Err(e)) => eprintln!("sink: {e}"),
                None => break,
            }
        }
        if n > 0 {
            commit(&c, &next);
            got += n as i64;
            last = Instant::now();
        }
    }
    let first = relay.join().expect("relay thread");
    let secs = last.duration_since(first).as_secs_f64();
    let rate = want as f64 / secs;
    println!("broker ceiling: {want} records, raw → events → consumed in {secs:.2} s: {rate:.0} records/s");
    if let Some(path) = json {
        let body = serde_json::json!({"records": want, "secs": secs, "records_per_sec": rate});
        std::fs::write(path, body.to_string()).expect("writing --json");
    }
}
