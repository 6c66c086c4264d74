//! TEMPORARY probe of tansu's state after a restart (not committed).

use std::time::{Duration, Instant};

use annals_tests::kafka::{OwnBroker, create_topic, read_topic};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn probe_restart() {
    let broker = std::sync::Arc::new(tokio::task::spawn_blocking(OwnBroker::start).await.unwrap());
    let brokers = broker.brokers().to_owned();
    create_topic(&brokers, "probe", 2).await;
    let b2 = brokers.clone();
    let producing = std::thread::spawn(move || {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &b2)
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .set("compression.type", "lz4")
            .create()
            .unwrap();
        let started = Instant::now();
        let mut n = 0;
        while started.elapsed() < Duration::from_secs(4) {
            let key = format!("k{}", n % 10);
            let payload = format!("{n}");
            let _ = producer.send(
                BaseRecord::to("probe")
                    .key(&key)
                    .payload(&payload)
                    .partition(n % 2),
            );
            producer.poll(Duration::ZERO);
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        // stop producing at the disconnect, like the relay
        drop(producer);
        n
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = broker.clone();
    tokio::task::spawn_blocking(move || b.restart(false))
        .await
        .unwrap();
    let sent = producing.join().unwrap();
    eprintln!("sent {sent}");
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "probe")
        .create()
        .unwrap();
    for p in 0..2 {
        eprintln!(
            "watermarks p{p}: {:?}",
            consumer.fetch_watermarks("probe", p, Duration::from_secs(10))
        );
    }
    let (_, hw) = consumer
        .fetch_watermarks("probe", 0, Duration::from_secs(10))
        .unwrap();
    for (start, wait, isolation) in [
        (0, "500", "read_committed"),
        (hw - 1, "500", "read_committed"),
        (hw - 1, "500", "read_uncommitted"),
        (300, "100", "read_uncommitted"),
        (hw - 1, "100", "read_uncommitted"),
    ] {
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", "probe2")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", wait)
            .set("isolation.level", isolation)
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition_offset("probe", 0, rdkafka::Offset::Offset(start))
            .unwrap();
        c.assign(&tpl).unwrap();
        let started = Instant::now();
        let mut first = None;
        let mut got = 0;
        loop {
            use rdkafka::Message;
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    got += 1;
                    first.get_or_insert(m.offset());
                }
                Some(Err(e)) => {
                    eprintln!(
                        "from {start} wait {wait}: {e} after {got} (first {first:?}) in {:?}",
                        started.elapsed()
                    );
                    break;
                }
                None => {
                    if started.elapsed() > Duration::from_secs(30) {
                        eprintln!("from {start}: no EOF, {got} records, first {first:?}");
                        break;
                    }
                }
            }
        }
    }
    let b3 = brokers.clone();
    let t = Instant::now();
    let read = tokio::task::spawn_blocking(move || read_topic(&b3, "probe"))
        .await
        .unwrap();
    eprintln!("read_topic took {:?}", t.elapsed());
    for (p, records) in &read {
        use rdkafka::Message;
        let offsets: Vec<i64> = records.iter().map(|r| r.offset()).collect();
        eprintln!(
            "p{p}: {} records, first {:?} last {:?}",
            records.len(),
            offsets.first(),
            offsets.last()
        );
        let gaps: Vec<_> = offsets.windows(2).filter(|w| w[1] != w[0] + 1).collect();
        eprintln!("  gaps {:?}", &gaps[..gaps.len().min(10)]);
    }
    tokio::task::spawn_blocking(move || drop(broker))
        .await
        .unwrap();
}

/// Debug: what a stuck partition holds.
pub(crate) fn dump_partition(brokers: &str, topic: &str, partition: i32) {
    use rdkafka::Message;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "probe3")
        .set("enable.partition.eof", "true")
        .set("fetch.wait.max.ms", "500")
        .create()
        .unwrap();
    let (low, high) = c
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .unwrap();
    eprintln!("p{partition}: watermarks ({low}, {high})");
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, rdkafka::Offset::Beginning)
        .unwrap();
    c.assign(&tpl).unwrap();
    let started = Instant::now();
    let mut offsets = Vec::new();
    loop {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => offsets.push(m.offset()),
            Some(Err(e)) => {
                eprintln!(
                    "p{partition}: {e} after {} records, last {:?}",
                    offsets.len(),
                    offsets.last()
                );
                break;
            }
            None => {
                if started.elapsed() > Duration::from_secs(20) {
                    eprintln!(
                        "p{partition}: stuck after {} records, last {:?}",
                        offsets.len(),
                        offsets.last()
                    );
                    break;
                }
            }
        }
    }
    if started.elapsed() > Duration::from_secs(20) {
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .unwrap();
        producer
            .send(
                BaseRecord::to(topic)
                    .key("bridge")
                    .payload("{}")
                    .partition(partition),
            )
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
        let started = Instant::now();
        loop {
            match c.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    eprintln!("p{partition}: after the bridge, got offset {}", m.offset());
                }
                Some(Err(e)) => {
                    eprintln!("p{partition}: after the bridge, {e}");
                    break;
                }
                None => {
                    if started.elapsed() > Duration::from_secs(10) {
                        eprintln!("p{partition}: still stuck after the bridge");
                        break;
                    }
                }
            }
        }
        let (low, high) = c
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .unwrap();
        eprintln!("p{partition}: watermarks now ({low}, {high})");
    }
    let gaps: Vec<_> = offsets.windows(2).filter(|w| w[1] != w[0] + 1).collect();
    eprintln!("  gaps {gaps:?}");
}
