//! Scripted measurement (not criterion: it needs a live broker and a prepared group): how long
//! one `kafka_lag` collection of a wide topic takes with `KafkaSource` (one Metadata, one
//! OffsetFetch, one batched ListOffsets) against the naive way (the committed offsets once,
//! then one `fetch_watermarks` per partition), both on the same `nisshi` broker in one run.
//! `cargo bench --bench kafka_lag` measures a 1 000-partition topic; under `cargo test` it
//! only checks that the harness works, on 20 partitions.

#[path = "../tests/kafka_support/mod.rs"]
mod kafka_support;

use std::time::{Duration, Instant};

use automaton::clients::kafka::{KafkaSettings, KafkaSource};
use automaton::clients::kafka::{LagQuery, OffsetReset};
use kafka_support::Broker;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const GROUP: &str = "bench";
const TIMEOUT: Duration = Duration::from_secs(10);

/// Messages produced to `partition`: 1..=5, so the end offsets differ.
fn produced(partition: i32) -> i64 {
    i64::from(partition % 5) + 1
}

/// The group's committed offset of `partition`: about half of what it holds.
fn committed(partition: i32) -> i64 {
    produced(partition) / 2
}

fn config(broker: &Broker) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", broker.bootstrap());
    config
}

/// Creates `topic` with `partitions` partitions; `Err` is why the broker refused.
async fn create_topic(broker: &Broker, topic: &str, partitions: i32) -> Result<(), String> {
    let admin: AdminClient<DefaultClientContext> = config(broker).create().map_err(|e| e.to_string())?;
    let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&topics, &opts)
        .await
        .map_err(|e| e.to_string())?;
    for result in results {
        result.map_err(|(t, e)| format!("{t}: {e}"))?;
    }
    // Usable only once the metadata shows every partition.
    let client: BaseConsumer = config(broker).create().map_err(|e| e.to_string())?;
    let metadata = client
        .fetch_metadata(Some(topic), TIMEOUT)
        .map_err(|e| e.to_string())?;
    let seen = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    if seen == partitions as usize {
        Ok(())
    } else {
        Err(format!("metadata shows {seen} partitions of {partitions}"))
    }
}

/// The topic with the widest of `counts` that the broker accepts, and its partition count.
async fn widest_topic(broker: &Broker, counts: &[i32]) -> (String, i32) {
    for &count in counts {
        let topic = format!("wide-{count}");
        match create_topic(broker, &topic, count).await {
            Ok(()) => return (topic, count),
            Err(e) => eprintln!("a topic with {count} partitions failed, trying fewer: {e}"),
        }
    }
    panic!("the broker accepted none of {counts:?} partitions");
}

/// `produced(p)` messages to every partition, through one producer.
fn produce(broker: &Broker, topic: &str, partitions: i32) {
    let producer: BaseProducer = config(broker).set("linger.ms", "5").create().expect("a producer");
    for partition in 0..partitions {
        for i in 0..produced(partition) {
            let payload = i.to_string();
            let record = BaseRecord::<(), String>::to(topic)
                .partition(partition)
                .payload(&payload);
            producer
                .send(record)
                .unwrap_or_else(|(e, _)| panic!("send to {topic}/{partition}: {e}"));
        }
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(Duration::from_secs(60))
        .expect("every message acknowledged");
}

/// The naive collection: the partitions from metadata, the committed offsets in one call,
/// then one ListOffsets round trip per partition. The total lag as `KafkaSource` counts it
/// (`offset_reset: latest`: no commit is no lag; never negative).
fn naive_lag(consumer: &BaseConsumer, topic: &str) -> i64 {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT).expect("metadata");
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    for &partition in &partitions {
        tpl.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(tpl, TIMEOUT)
        .expect("committed offsets");
    let mut lag = 0;
    for &partition in &partitions {
        let (_low, high) = consumer
            .fetch_watermarks(topic, partition, TIMEOUT)
            .expect("watermarks");
        let offset = committed.find_partition(topic, partition).map(|e| e.offset());
        if let Some(Offset::Offset(committed)) = offset {
            if committed >= 0 {
                lag += (high - committed).max(0);
            }
        }
    }
    lag
}

/// Runs `collect` once to warm up, then `n` timed times; the samples and the lag each saw.
fn time(n: usize, mut collect: impl FnMut() -> i64) -> (Vec<Duration>, Vec<i64>) {
    let mut lags = vec![collect()];
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        lags.push(collect());
        samples.push(started.elapsed());
    }
    (samples, lags)
}

fn mean_min(samples: &[Duration]) -> (f64, f64) {
    let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1000.0).collect();
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    (mean, ms.iter().copied().fold(f64::INFINITY, f64::min))
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let (counts, batched_runs, naive_runs): (&[i32], usize, usize) = if measuring {
        (&[1000, 500, 200, 100], 20, 3)
    } else {
        (&[20], 1, 1)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let broker = Broker::start();
    let setup = Instant::now();
    let (topic, partitions) = runtime.block_on(widest_topic(&broker, counts));
    produce(&broker, &topic, partitions);
    let offsets: Vec<(i32, i64)> = (0..partitions).map(|p| (p, committed(p))).collect();
    broker.commit(GROUP, &topic, &offsets);
    let expected: i64 = (0..partitions).map(|p| produced(p) - committed(p)).sum();
    eprintln!(
        "setup: {partitions} partitions, {} messages, lag {expected}, in {:.1?}",
        (0..partitions).map(produced).sum::<i64>(),
        setup.elapsed()
    );

    let source = KafkaSource::new(KafkaSettings::new(broker.bootstrap(), TIMEOUT));
    let spec = LagQuery {
        group: GROUP.to_owned(),
        topic: Some(topic.clone()),
        offset_reset: OffsetReset::Latest,
    };
    let (batched, batched_lags) = time(batched_runs, || {
        let lags = runtime
            .block_on(source.collect_lags(&spec))
            .expect("KafkaSource::collect_lags");
        assert_eq!(lags.len(), 1, "one lag for one topic: {lags:?}");
        lags[0].series().value as i64
    });

    let consumer: BaseConsumer = config(&broker)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer");
    let (naive, naive_lags) = time(naive_runs, || naive_lag(&consumer, &topic));

    assert!(
        batched_lags.iter().all(|&l| l == expected),
        "KafkaSource saw {batched_lags:?}, expected {expected}"
    );
    assert!(
        naive_lags.iter().all(|&l| l == expected),
        "the naive way saw {naive_lags:?}, expected {expected}"
    );
    let (b_mean, b_min) = mean_min(&batched);
    let (n_mean, n_min) = mean_min(&naive);
    for (what, n, mean, min) in [
        ("batched (KafkaSource::collect)", batched.len(), b_mean, b_min),
        (
            "naive (fetch_watermarks per partition)",
            naive.len(),
            n_mean,
            n_min,
        ),
    ] {
        println!("{what}, {partitions} partitions: n={n} mean={mean:.2} ms min={min:.2} ms");
    }
    println!(
        "ratio naive/batched: mean {:.1}x, min {:.1}x (total lag {expected} both ways)",
        n_mean / b_mean,
        n_min / b_min
    );
}
