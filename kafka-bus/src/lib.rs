#![doc = include_str!("../README.md")]

mod config;
mod consumer;
mod error;
mod headers;
mod message;
mod relay;

pub use config::KafkaConfig;
pub use consumer::{
    Consumer, ConsumerBuilder, ConsumerState, ConsumerStatus, DeadLetter, DeadLetterCut,
    DeadLetterReason, DeadLetterReplay, FailurePolicy, Handler, HandlerFuture, NoInbox,
    OnExhausted, PartitionStatus, ReceivedEvent, ReplayReport, StuckRecord, UnknownTypes,
};
pub use error::{Error, RecordOrigin, Result};
pub use headers::{HeaderName, outbox_headers, relayed_headers};
pub use message::IncomingMessage;
pub use relay::{
    OutboxRelay, OutboxRelayBuilder, RelayHandle, RelayStatus, ShardRole, ShardStatus,
    partition_for_key,
};

/// The Kafka client crate, whose types appear in this API.
pub use rdkafka;
