//! Which partition a key goes to.
//!
//! The relay picks every record's partition itself instead of leaving it to
//! librdkafka, so that recovery knows which partition a pending outbox record
//! would have gone to and can look for it there.

/// The partition of `key` among `partitions`, as the Java client's default
/// partitioner (and librdkafka's `murmur2_random`) picks it: the murmur2 hash
/// of the key's UTF-8 bytes, made positive, modulo the partition count.
///
/// Producers in other languages that use the Java default put a key on the
/// same partition, so a topic can be shared with them without reordering a
/// key's records.
///
/// The partition depends on the partition count: adding partitions to a
/// topic moves keys. Do it only with the relay stopped and its backlog at
/// zero, or a key's later records may overtake its earlier ones, and a
/// relay recovering after a crash looks for a record in the wrong partition.
///
/// ```
/// use annals_kafka::partition_for_key;
///
/// assert_eq!(partition_for_key("foobar", 50), 16);
/// assert!(partition_for_key("order-7", 12) < 12);
/// ```
///
/// # Panics
///
/// When `partitions` is zero.
pub fn partition_for_key(key: &str, partitions: u32) -> u32 {
    assert!(partitions > 0, "a topic has at least one partition");
    (murmur2(key.as_bytes()) & 0x7fff_ffff) % partitions
}

/// MurmurHash2 with the seed and tail handling of Kafka's
/// `org.apache.kafka.common.utils.Utils.murmur2`.
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    // Java hashes the length as an int; keys longer than 2 GiB do not exist.
    let mut hash = SEED ^ data.len() as u32;
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes([word[0], word[1], word[2], word[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        hash = hash.wrapping_mul(M);
        hash ^= k;
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        for (shift, byte) in tail.iter().enumerate().rev() {
            hash ^= u32::from(*byte) << (8 * shift);
        }
        hash = hash.wrapping_mul(M);
    }
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(M);
    hash ^= hash >> 15;
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Apache Kafka's `UtilsTest.testMurmur2` vectors, as signed Java ints.
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&str, i32); 6] = [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key.as_bytes()) as i32, expected, "{key}");
        }
    }

    #[test]
    fn every_key_lands_inside_the_topic() {
        for partitions in [1, 2, 3, 12, 100] {
            for n in 0..500 {
                assert!(partition_for_key(&format!("order-{n}"), partitions) < partitions);
            }
        }
        assert_eq!(partition_for_key("anything", 1), 0);
    }
}
