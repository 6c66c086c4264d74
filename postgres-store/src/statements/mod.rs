//! Every statement the crate runs, from the files in `sql/`, with the
//! schema filled in once per store: one set per part.

mod append;
pub(crate) mod template;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use annals::OutboxShard;
use tokio_postgres::types::Type;

pub(crate) use append::{
    AppendStatements, GROUP_COLUMNS, GROUP_SIZES, LEADING_TYPES, Refusal, Shape,
};

use crate::schema::SchemaName;
use template::{expand, fill};

/// The statements of one schema.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) append: AppendStatements,
    pub(crate) read: ReadStatements,
    pub(crate) relay: RelayStatements,
    pub(crate) projection: ProjectionStatements,
    pub(crate) inbox: InboxStatements,
    pub(crate) horizon: HorizonStatements,
    pub(crate) notify: NotifyStatements,
    pub(crate) lease: LeaseStatements,
}

/// What the event store reads (`sql/`).
#[derive(Debug)]
pub(crate) struct ReadStatements {
    pub(crate) stream: String,
    pub(crate) all: String,
    pub(crate) stream_version: String,
    pub(crate) snapshot: String,
    pub(crate) from_snapshot: String,
    pub(crate) command_outcome: String,
    pub(crate) held_back_events: String,
    pub(crate) backlog: String,
    /// A checkpoint of the checkpoints table by name: the relays' and the
    /// projections'.
    pub(crate) checkpoint: String,
}

/// The outbox relays' statements (`sql/relay/`); those of a shard come
/// from [`RelayStatements::shard`].
#[derive(Debug)]
pub(crate) struct RelayStatements {
    schema: SchemaName,
    shards: Mutex<HashMap<OutboxShard, Arc<ShardStatements>>>,
    pub(crate) save_checkpoint: String,
    pub(crate) park: String,
    pub(crate) parked: String,
    pub(crate) in_flight: String,
    pub(crate) set_in_flight: String,
    pub(crate) shard_index_valid: String,
}

/// The statements that read, count and prune the outbox or one shard of it.
#[derive(Debug)]
pub(crate) struct ShardStatements {
    pub(crate) read: String,
    pub(crate) held_back: String,
    pub(crate) backlog: String,
    pub(crate) prune: String,
}

/// The projection backend's statements (`sql/projection/`).
#[derive(Debug)]
pub(crate) struct ProjectionStatements {
    pub(crate) move_checkpoint: String,
    pub(crate) create_checkpoint: String,
    pub(crate) park: String,
    pub(crate) parked: String,
    pub(crate) unpark: String,
    pub(crate) serving: String,
    pub(crate) promote: String,
    pub(crate) reset: String,
}

/// The inbox's statements (`sql/inbox/`).
#[derive(Debug)]
pub(crate) struct InboxStatements {
    pub(crate) claim: String,
    pub(crate) prune: String,
}

/// The horizon of the global stream's readers and what holds it back.
#[derive(Debug)]
pub(crate) struct HorizonStatements {
    pub(crate) horizon: String,
    pub(crate) oldest_blocking_transaction: String,
}

/// Waking readers (`sql/notify/`).
#[derive(Debug)]
pub(crate) struct NotifyStatements {
    pub(crate) notify: String,
    pub(crate) listen: String,
    pub(crate) no_flush_wait: String,
}

/// Leases (`sql/lease/`).
#[derive(Debug)]
pub(crate) struct LeaseStatements {
    pub(crate) try_lock: String,
    pub(crate) keepalive: String,
}

/// The migrator's statements (`sql/migrate/`).
#[derive(Debug)]
pub(crate) struct MigrationStatements {
    pub(crate) create_schema: String,
    pub(crate) lock: String,
    pub(crate) create_version_table: String,
    pub(crate) applied: String,
    pub(crate) record: String,
}

impl Statements {
    pub(crate) fn new(schema: &SchemaName) -> Self {
        Statements {
            append: AppendStatements::new(schema),
            read: ReadStatements {
                stream: schema.statement(include_str!("../../sql/read_stream.sql")),
                all: schema.statement(include_str!("../../sql/read_all.sql")),
                stream_version: schema.statement(include_str!("../../sql/stream_version.sql")),
                snapshot: schema.statement(include_str!("../../sql/load_snapshot.sql")),
                from_snapshot: schema.statement(include_str!("../../sql/read_from_snapshot.sql")),
                command_outcome: schema.statement(include_str!("../../sql/command_outcome.sql")),
                held_back_events: schema.statement(include_str!("../../sql/held_back_events.sql")),
                backlog: schema.statement(include_str!("../../sql/backlog.sql")),
                checkpoint: schema.statement(include_str!("../../sql/checkpoint.sql")),
            },
            relay: RelayStatements {
                schema: schema.clone(),
                shards: Mutex::default(),
                save_checkpoint: schema
                    .statement(include_str!("../../sql/relay/save_checkpoint.sql")),
                park: schema.statement(include_str!("../../sql/relay/park.sql")),
                parked: schema.statement(include_str!("../../sql/relay/parked.sql")),
                in_flight: schema.statement(include_str!("../../sql/relay/in_flight.sql")),
                set_in_flight: schema.statement(include_str!("../../sql/relay/set_in_flight.sql")),
                shard_index_valid: schema
                    .statement(include_str!("../../sql/relay/shard_index_valid.sql")),
            },
            projection: ProjectionStatements {
                move_checkpoint: schema
                    .statement(include_str!("../../sql/projection/move_checkpoint.sql")),
                create_checkpoint: schema
                    .statement(include_str!("../../sql/projection/create_checkpoint.sql")),
                park: schema.statement(include_str!("../../sql/projection/park.sql")),
                parked: schema.statement(include_str!("../../sql/projection/parked.sql")),
                unpark: schema.statement(include_str!("../../sql/projection/unpark.sql")),
                serving: schema.statement(include_str!("../../sql/projection/serving.sql")),
                promote: schema.statement(include_str!("../../sql/projection/promote.sql")),
                reset: schema.statement(include_str!("../../sql/projection/reset.sql")),
            },
            inbox: InboxStatements {
                claim: schema.statement(include_str!("../../sql/inbox/claim.sql")),
                prune: schema.statement(include_str!("../../sql/inbox/prune.sql")),
            },
            horizon: HorizonStatements {
                horizon: schema.statement(include_str!("../../sql/horizon.sql")),
                oldest_blocking_transaction: schema
                    .statement(include_str!("../../sql/oldest_blocking_transaction.sql")),
            },
            notify: NotifyStatements {
                notify: schema.statement(include_str!("../../sql/notify/notify.sql")),
                listen: schema.statement(include_str!("../../sql/notify/listen.sql")),
                no_flush_wait: schema.statement(include_str!("../../sql/notify/no_flush_wait.sql")),
            },
            lease: LeaseStatements {
                try_lock: schema.statement(include_str!("../../sql/lease/try.sql")),
                keepalive: schema.statement(include_str!("../../sql/lease/keepalive.sql")),
            },
        }
    }

    /// Every statement, named, with the types of its leading parameters as
    /// the store prepares it, and with the shard statements of one shard of
    /// `shards` and of the whole outbox: for a check against the server.
    /// The shard index statements are not among them (building an index
    /// is no check).
    pub(crate) fn all(&self, shards: u32) -> Vec<(String, String, Vec<Type>)> {
        let mut all: Vec<(String, String, Vec<Type>)> = self
            .append
            .all()
            .map(|(name, sql, types)| (name, sql.to_owned(), types.to_vec()))
            .collect();
        let read = &self.read;
        let relay = &self.relay;
        let projection = &self.projection;
        let named = [
            ("read_stream.sql", &read.stream),
            ("read_all.sql", &read.all),
            ("stream_version.sql", &read.stream_version),
            ("load_snapshot.sql", &read.snapshot),
            ("read_from_snapshot.sql", &read.from_snapshot),
            ("command_outcome.sql", &read.command_outcome),
            ("held_back_events.sql", &read.held_back_events),
            ("backlog.sql", &read.backlog),
            ("checkpoint.sql", &read.checkpoint),
            ("relay/save_checkpoint.sql", &relay.save_checkpoint),
            ("relay/park.sql", &relay.park),
            ("relay/parked.sql", &relay.parked),
            ("relay/in_flight.sql", &relay.in_flight),
            ("relay/set_in_flight.sql", &relay.set_in_flight),
            ("relay/shard_index_valid.sql", &relay.shard_index_valid),
            (
                "projection/move_checkpoint.sql",
                &projection.move_checkpoint,
            ),
            (
                "projection/create_checkpoint.sql",
                &projection.create_checkpoint,
            ),
            ("projection/park.sql", &projection.park),
            ("projection/parked.sql", &projection.parked),
            ("projection/unpark.sql", &projection.unpark),
            ("projection/serving.sql", &projection.serving),
            ("projection/promote.sql", &projection.promote),
            ("projection/reset.sql", &projection.reset),
            ("inbox/claim.sql", &self.inbox.claim),
            ("inbox/prune.sql", &self.inbox.prune),
            ("horizon.sql", &self.horizon.horizon),
            (
                "oldest_blocking_transaction.sql",
                &self.horizon.oldest_blocking_transaction,
            ),
            ("notify/notify.sql", &self.notify.notify),
            ("notify/listen.sql", &self.notify.listen),
            ("notify/no_flush_wait.sql", &self.notify.no_flush_wait),
            ("lease/try.sql", &self.lease.try_lock),
            ("lease/keepalive.sql", &self.lease.keepalive),
        ];
        all.extend(
            named
                .into_iter()
                .map(|(name, sql)| (name.to_owned(), sql.clone(), Vec::new())),
        );
        let last =
            OutboxShard::new(shards.max(1) - 1, shards.max(1)).expect("a shard of the count");
        for shard in [OutboxShard::ALL, last] {
            let statements = relay.shard(shard);
            for (name, sql) in [
                ("relay/read_shard.sql", &statements.read),
                ("relay/held_back_shard.sql", &statements.held_back),
                ("relay/backlog.sql", &statements.backlog),
                ("relay/prune.sql", &statements.prune),
            ] {
                all.push((format!("{name} for shard {shard}"), sql.clone(), Vec::new()));
            }
        }
        all
    }
}

impl RelayStatements {
    /// The statements of `shard`: the whole outbox's for a single shard,
    /// else with the shard filter's numbers written in (a modulo by a
    /// parameter could use no index), which a partial index of the shard
    /// serves. Rendered once per shard.
    pub(crate) fn shard(&self, shard: OutboxShard) -> Arc<ShardStatements> {
        let mut shards = self.shards.lock().unwrap_or_else(PoisonError::into_inner);
        let statements = shards.entry(shard).or_insert_with(|| {
            let render = |template: &str| self.for_shard(template, shard);
            Arc::new(ShardStatements {
                read: render(include_str!("../../sql/relay/read_shard.sql")),
                held_back: render(include_str!("../../sql/relay/held_back_shard.sql")),
                backlog: render(include_str!("../../sql/relay/backlog.sql")),
                prune: render(include_str!("../../sql/relay/prune.sql")),
            })
        });
        Arc::clone(statements)
    }

    /// The statement that creates the partial index of `shard`, named
    /// `index`.
    pub(crate) fn create_shard_index(&self, shard: OutboxShard, index: &str) -> String {
        let sql = self.for_shard(
            include_str!("../../sql/relay/shard_index_create.sql"),
            shard,
        );
        fill(&sql, &[("index", &quoted(index))])
    }

    /// The statement that drops the index named `index`.
    pub(crate) fn drop_shard_index(&self, index: &str) -> String {
        let sql = self
            .schema
            .statement(include_str!("../../sql/relay/shard_index_drop.sql"));
        fill(&sql, &[("index", &quoted(index))])
    }

    fn for_shard(&self, template: &str, shard: OutboxShard) -> String {
        let sections: &[&str] = if shard.count() > 1 { &["sharded"] } else { &[] };
        fill(
            &self.schema.fill(&expand(template, sections, 1)),
            &[
                ("shard_count", &shard.count().to_string()),
                ("shard_index", &shard.index().to_string()),
            ],
        )
    }
}

impl MigrationStatements {
    pub(crate) fn new(schema: &SchemaName) -> Self {
        MigrationStatements {
            create_schema: schema.statement(include_str!("../../sql/migrate/create_schema.sql")),
            lock: schema.statement(include_str!("../../sql/migrate/lock.sql")),
            create_version_table: schema
                .statement(include_str!("../../sql/migrate/create_version_table.sql")),
            applied: schema.statement(include_str!("../../sql/migrate/applied.sql")),
            record: schema.statement(include_str!("../../sql/migrate/record.sql")),
        }
    }
}

/// `name` quoted as an identifier; the names quoted here are the store's
/// own, of letters, digits and underscores.
fn quoted(name: &str) -> String {
    format!("\"{name}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_name_the_quoted_schema_and_are_sent_without_comments() {
        let schema = SchemaName::new("Orders").unwrap();
        let statements = Statements::new(&schema);
        let all = statements.all(4);
        assert!(all.len() > 45 + 30 + 8, "{}", all.len());
        for (name, sql, _) in &all {
            assert!(!sql.contains("--"), "{name}: {sql}");
            assert!(!sql.contains("\n\n"), "{name}: {sql}");
            assert!(!sql.contains("\n "), "{name}: {sql}");
            assert!(!sql.contains('{'), "{name}: {sql}");
            assert!(!sql.contains("annals."), "{name}: {sql}");
        }
        assert!(statements.read.all.contains("FROM \"Orders\".events"));
        let create = statements
            .relay
            .create_shard_index(OutboxShard::new(1, 3).unwrap(), "outbox_shard_3_1_idx");
        assert_eq!(
            create,
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS \"outbox_shard_3_1_idx\"\n\
             ON \"Orders\".outbox (tx_id, position)\n\
             WHERE (key_hash::bigint & 4294967295) % 3 = 1\n"
        );
    }

    #[test]
    fn shard_statements_filter_on_the_shard_only_when_there_are_several() {
        let statements = Statements::new(&SchemaName::new("annals").unwrap());
        let filter = "(key_hash::bigint & 4294967295) %";
        let whole = statements.relay.shard(OutboxShard::ALL);
        let one = statements.relay.shard(OutboxShard::new(2, 5).unwrap());
        for sql in [&whole.read, &whole.held_back, &whole.backlog, &whole.prune] {
            assert!(!sql.contains(filter), "{sql}");
        }
        for sql in [&one.read, &one.held_back, &one.backlog, &one.prune] {
            assert!(sql.contains(&format!("{filter} 5 = 2\n")), "{sql}");
        }
        assert!(Arc::ptr_eq(
            &one,
            &statements.relay.shard(OutboxShard::new(2, 5).unwrap())
        ));
    }
}
