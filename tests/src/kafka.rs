//! Where the tests find a Kafka-protocol broker, and helpers to create and
//! read topics.
//!
//! The broker is `ANNALS_TEST_KAFKA_BROKERS` (bootstrap servers) when set;
//! otherwise an Apache Kafka container started once per test binary with
//! testcontainers (which needs Docker). The README's test command starts a
//! tansu broker and sets the variable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use testcontainers_modules::kafka::apache::{KAFKA_PORT, Kafka};
use testcontainers_modules::testcontainers::Container;
use testcontainers_modules::testcontainers::runners::SyncRunner;

/// The bootstrap servers of the test broker.
pub fn brokers() -> &'static str {
    static BROKERS: OnceLock<String> = OnceLock::new();
    BROKERS.get_or_init(|| match std::env::var("ANNALS_TEST_KAFKA_BROKERS") {
        Ok(brokers) if !brokers.is_empty() => brokers,
        _ => std::thread::spawn(start_container)
            .join()
            .expect("the Kafka container thread panicked"),
    })
}

fn start_container() -> String {
    static CONTAINER: OnceLock<Container<Kafka>> = OnceLock::new();
    let container = CONTAINER.get_or_init(|| {
        Kafka::default().start().expect(
            "ANNALS_TEST_KAFKA_BROKERS is not set and a Kafka container could not be started",
        )
    });
    let port = container
        .get_host_port_ipv4(KAFKA_PORT)
        .expect("the container's Kafka port");
    format!("127.0.0.1:{port}")
}

/// Whether the test broker implements Kafka transactions, aborted records
/// hidden from `read_committed` readers included: the testcontainers Apache
/// Kafka does; a broker given by `ANNALS_TEST_KAFKA_BROKERS` is assumed not
/// to unless `ANNALS_TEST_KAFKA_TRANSACTIONS=1` says so. tansu 0.6.0, the
/// broker of `scripts/test.sh`, does not hide aborted records, and under
/// load has lost all of one transactional producer's records in a partition
/// (docs/broker-notes.md).
pub fn broker_implements_transactions() -> bool {
    let given = std::env::var("ANNALS_TEST_KAFKA_BROKERS").is_ok_and(|brokers| !brokers.is_empty());
    !given
        || std::env::var("ANNALS_TEST_KAFKA_TRANSACTIONS")
            .is_ok_and(|value| value == "1" || value.eq_ignore_ascii_case("true"))
}

/// A topic name no other test uses: `prefix` and a random suffix.
pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{:016x}", fastrand::u64(..))
}

/// Creates `topic` with `partitions` partitions (tests create topics
/// explicitly: auto-creation picks its own partition count).
pub async fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("an admin client");
    let results = admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        )
        .await
        .expect("the create-topics request");
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => panic!("creating topic {topic}: {code}"),
        }
    }
}

/// Every record of every partition of `topic`, read from the start to the
/// true end of each partition, by partition.
///
/// The end is found with partition-EOF events rather than the high
/// watermark: tansu 0.6.0 reports the base offset of the last batch + 1 as
/// the high watermark after multi-record batches (docs/broker-notes.md).
pub fn read_topic(brokers: &str, topic: &str) -> BTreeMap<i32, Vec<OwnedMessage>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("annals-tests-reader-{:x}", fastrand::u64(..)),
        )
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("a reading consumer");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("topic metadata");
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|found| found.partitions().iter().map(|partition| partition.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        assignment
            .add_partition_offset(topic, *partition, Offset::Beginning)
            .expect("an assignment");
    }
    consumer
        .assign(&assignment)
        .expect("assigning the partitions");
    let mut records: BTreeMap<i32, Vec<OwnedMessage>> = partitions
        .iter()
        .map(|partition| (*partition, Vec::new()))
        .collect();
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while at_end.len() < partitions.len() {
        assert!(Instant::now() < deadline, "reading {topic} took over 60 s");
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(record)) => {
                at_end.remove(&record.partition());
                records
                    .entry(record.partition())
                    .or_default()
                    .push(record.detach());
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
            }
            Some(Err(error)) => panic!("reading {topic}: {error}"),
            None => {}
        }
    }
    drop_in_background(consumer);
    records
}

/// Drops a consumer on a thread of its own: closing a group consumer can
/// block for a minute or more against tansu 0.6.0 (docs/broker-notes.md), and
/// a test must not hang on it.
pub fn drop_in_background<T: Send + 'static>(consumer: T) {
    std::thread::spawn(move || drop(consumer));
}

/// A broker of a test's own, which the test may restart: a tansu started by
/// `scripts/kafka-broker.sh` with storage that survives restarts (S3 on a
/// local stand-in), in a run directory of its own.
#[derive(Debug)]
pub struct OwnBroker {
    run_dir: PathBuf,
    brokers: String,
}

impl OwnBroker {
    /// Starts the broker; panics with the script's output when it cannot.
    pub fn start() -> Self {
        let run_dir =
            std::env::temp_dir().join(format!("annals-own-broker-{:x}", fastrand::u64(..)));
        let output = broker_script(&run_dir, &["start", "--storage", "s3"]);
        let brokers = output
            .lines()
            .last()
            .expect("the script prints the bootstrap address last")
            .trim()
            .to_owned();
        OwnBroker { run_dir, brokers }
    }

    /// Its bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// Stops it (gracefully, or at once as a crash with `hard`) and starts it
    /// again on the same port with the same storage.
    pub fn restart(&self, hard: bool) {
        let mut args = vec!["restart"];
        if hard {
            args.push("--hard");
        }
        broker_script(&self.run_dir, &args);
    }

    /// Stops it, leaving it down until [`OwnBroker::start_again`]; its
    /// storage keeps running, so it comes back with what it had.
    pub fn stop(&self, hard: bool) {
        let mut args = vec!["stop", "--keep-storage"];
        if hard {
            args.push("--hard");
        }
        broker_script(&self.run_dir, &args);
    }

    /// Starts it again after [`OwnBroker::stop`], on the same port, so that
    /// clients that knew it find it again.
    pub fn start_again(&self) {
        let port = self
            .brokers
            .rsplit_once(':')
            .map(|(_, port)| port.to_owned())
            .expect("the broker's address has a port");
        broker_script_with_port(&self.run_dir, &["start", "--storage", "s3"], Some(&port));
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new(script_path())
            .arg("stop")
            .arg("--hard")
            .env("ANNALS_KAFKA_RUN_DIR", &self.run_dir)
            .status();
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

fn script_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka-broker.sh")
}

fn broker_script(run_dir: &PathBuf, args: &[&str]) -> String {
    broker_script_with_port(run_dir, args, None)
}

fn broker_script_with_port(run_dir: &PathBuf, args: &[&str], port: Option<&str>) -> String {
    let mut command = Command::new(script_path());
    command.args(args).env("ANNALS_KAFKA_RUN_DIR", run_dir);
    // A broker of its own never reuses the shared broker's port.
    match port {
        Some(port) => command.env("ANNALS_KAFKA_PORT", port),
        None => command.env_remove("ANNALS_KAFKA_PORT"),
    };
    let output = command.output().expect("running scripts/kafka-broker.sh");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "scripts/kafka-broker.sh {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The text of a header of `record`, if present.
pub fn header<'a>(record: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    use rdkafka::message::Headers;
    record
        .headers()?
        .iter()
        .find(|header| header.key == name)
        .and_then(|header| std::str::from_utf8(header.value?).ok())
}
