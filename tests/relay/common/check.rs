//! The exactly-once check of a topic: every written message once, each
//! key's messages in stream-version order on the partition of its key,
//! with every header.

use std::collections::{BTreeMap, HashMap, HashSet};

use annals::{GlobalPosition, OutboxShard};
use annals_kafka::{HeaderName, IncomingMessage, partition_for_key};
use annals_tests::kafka::{header, read_topic};
use uuid::Uuid;

use super::Written;

/// What the topic held.
#[derive(Debug)]
pub(crate) struct Published {
    /// Records read.
    pub(crate) records: usize,
    /// Records per partition.
    pub(crate) per_partition: BTreeMap<i32, usize>,
}

/// Reads all of `topic` and fails the test unless it holds exactly the
/// `written` messages (of that topic), each once, each key's in version
/// order on the partition [`partition_for_key`] gives, published by `relay`
/// with every header, each of the relay's `shards` in outbox order within a
/// partition.
pub(crate) async fn assert_exactly_once_in_order(
    brokers: &str,
    topic: &str,
    relay: &str,
    shards: u32,
    written: &[Written],
) -> Published {
    let (brokers, topic_name, relay) = (brokers.to_owned(), topic.to_owned(), relay.to_owned());
    let expected: Vec<Written> = written
        .iter()
        .filter(|message| message.topic == topic)
        .cloned()
        .collect();
    tokio::task::spawn_blocking(move || check(&brokers, &topic_name, &relay, shards, &expected))
        .await
        .unwrap_or_else(|join| std::panic::resume_unwind(join.into_panic()))
}

fn check(brokers: &str, topic: &str, relay: &str, shards: u32, expected: &[Written]) -> Published {
    let shards = OutboxShard::split(shards).expect("at least one shard");
    let partitions = read_topic(brokers, topic);
    let partition_count = partitions.len() as u32;
    let mut problems = Problems::default();
    let mut seen: HashMap<Uuid, usize> = HashMap::new();
    // key -> (partition, versions in offset order)
    let mut keys: HashMap<String, Vec<(i32, u64)>> = HashMap::new();
    let mut records = 0;
    for (partition, messages) in &partitions {
        let mut last_positions: Vec<Option<GlobalPosition>> = vec![None; shards.len()];
        for message in messages {
            records += 1;
            let incoming = match IncomingMessage::from_record(message) {
                Ok(incoming) => incoming,
                Err(error) => {
                    problems.add("unreadable record", error.to_string());
                    continue;
                }
            };
            *seen.entry(incoming.message_id).or_default() += 1;
            let key = incoming.key.clone().unwrap_or_default();
            let version = incoming.stream_version.unwrap_or(0);
            keys.entry(key.clone())
                .or_default()
                .push((*partition, version));
            let complete = incoming.metadata.correlation_id.is_some()
                && incoming.metadata.causation_id.is_some()
                && incoming.metadata.traceparent.is_some()
                && incoming.stream.as_ref().map(|s| s.as_str()) == Some(key.as_str())
                && incoming.stream_version.is_some()
                && header(message, HeaderName::CONTENT_TYPE) == Some("application/json");
            if !complete {
                problems.add("headers missing", format!("{}", incoming.origin));
            }
            if header(message, HeaderName::RELAY) != Some(relay) {
                problems.add("not from this relay", format!("{}", incoming.origin));
            }
            match incoming.outbox_position {
                None => problems.add("no outbox position", format!("{}", incoming.origin)),
                Some(position) => {
                    // A shard's records reach a partition in outbox order,
                    // session after session.
                    let shard = shards
                        .iter()
                        .position(|shard| shard.contains(&key))
                        .unwrap();
                    let last = &mut last_positions[shard];
                    if last.is_some_and(|last| last >= position) {
                        problems.add(
                            "a shard's outbox positions not rising in a partition",
                            format!("{} at {position} after {last:?}", incoming.origin),
                        );
                    }
                    *last = Some(position);
                }
            }
        }
    }
    let expected_ids: HashSet<Uuid> = expected.iter().map(|message| message.message_id).collect();
    for (id, count) in &seen {
        if *count > 1 {
            problems.add("duplicated", format!("{id} {count} times"));
        }
        if !expected_ids.contains(id) {
            problems.add("unexpected", id.to_string());
        }
    }
    for message in expected {
        if !seen.contains_key(&message.message_id) {
            problems.add(
                "missing",
                format!(
                    "{} v{} ({})",
                    message.key, message.stream_version, message.message_id
                ),
            );
        }
    }
    let mut expected_versions: HashMap<&str, Vec<u64>> = HashMap::new();
    for message in expected {
        expected_versions
            .entry(&message.key)
            .or_default()
            .push(message.stream_version);
    }
    for (key, versions) in &mut expected_versions {
        versions.sort_unstable();
        let found = keys.get(*key).cloned().unwrap_or_default();
        let found_partitions: HashSet<i32> =
            found.iter().map(|(partition, _)| *partition).collect();
        if found_partitions.len() > 1 {
            problems.add(
                "key on several partitions",
                format!("{key}: {found_partitions:?}"),
            );
        }
        let home = partition_for_key(key, partition_count.max(1)) as i32;
        if found_partitions.iter().any(|partition| *partition != home) {
            problems.add(
                "key off its partition",
                format!("{key}: {found_partitions:?}, not {home}"),
            );
        }
        let found_versions: Vec<u64> = found.iter().map(|(_, version)| *version).collect();
        if found_versions != *versions {
            problems.add(
                "key out of order (or incomplete)",
                format!("{key}: {found_versions:?}"),
            );
        }
    }
    assert!(
        problems.is_empty(),
        "topic {topic}: {records} records for {} written messages; problems:\n{problems}",
        expected.len()
    );
    Published {
        records,
        per_partition: partitions
            .iter()
            .map(|(partition, messages)| (*partition, messages.len()))
            .collect(),
    }
}

/// Problems by kind, with a few examples each.
#[derive(Default)]
struct Problems(BTreeMap<&'static str, (usize, Vec<String>)>);

impl Problems {
    fn add(&mut self, kind: &'static str, example: String) {
        let (count, examples) = self.0.entry(kind).or_default();
        *count += 1;
        if examples.len() < 8 {
            examples.push(example);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (kind, (count, examples)) in &self.0 {
            writeln!(f, "  {kind}: {count}, e.g. {examples:?}")?;
        }
        Ok(())
    }
}
