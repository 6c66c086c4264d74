//! The schema name, validated before any SQL runs, and the statements with
//! it filled in.

use crate::{Error, Result};

/// The longest identifier PostgreSQL keeps whole (NAMEDATALEN - 1).
const MAX_IDENTIFIER_LEN: usize = 63;

/// A schema name that is safe to put into SQL text: a plain identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaName(String);

impl SchemaName {
    /// Checks `name`: 1 to 63 ASCII letters, digits and underscores, not
    /// starting with a digit, and not `pg_...` (reserved for the system).
    pub(crate) fn new(name: &str) -> Result<Self> {
        let invalid = |reason| {
            Err(Error::InvalidSchemaName {
                name: name.chars().take(80).collect(),
                reason,
            })
        };
        if name.is_empty() {
            return invalid("it is empty");
        }
        if name.len() > MAX_IDENTIFIER_LEN {
            return invalid("it is longer than 63 bytes");
        }
        if !name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
        {
            return invalid("only ASCII letters, digits and underscores are allowed");
        }
        if name.as_bytes()[0].is_ascii_digit() {
            return invalid("it starts with a digit");
        }
        if name.to_ascii_lowercase().starts_with("pg_") {
            return invalid("the prefix pg_ is reserved for system schemas");
        }
        Ok(SchemaName(name.to_owned()))
    }

    /// The name as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The name quoted as an identifier. Validation leaves nothing to
    /// escape; quoting keeps upper-case letters as they are.
    pub(crate) fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }

    /// `template` with every `{schema}` replaced by the quoted name.
    pub(crate) fn render(&self, template: &str) -> String {
        template.replace("{schema}", &self.quoted())
    }

    /// A statement the store sends: rendered, without its comment lines,
    /// blank lines and indentation, which the server would otherwise
    /// receive, scan and keep with every prepared statement, and the
    /// statement cache would hash at every use (no string literal in `sql/`
    /// spans lines, so no literal loses its spaces).
    pub(crate) fn statement(&self, template: &str) -> String {
        let mut sql = String::with_capacity(template.len());
        for line in template.lines() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with("--") {
                continue;
            }
            sql.push_str(trimmed);
            sql.push('\n');
        }
        self.render(&sql)
    }
}

/// How an append writes its stream row: by expected version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamStep {
    /// Any version: insert or move on.
    Any,
    /// No stream yet: insert.
    New,
    /// An existing stream at any version: update.
    Exists,
    /// An existing stream at an exact version: update.
    Existing,
}

/// What an append writes besides its stream row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One event, no snapshot, no outbox message: most commands.
    Event,
    /// Anything else.
    Batch,
}

/// How an append statement refuses when it cannot write its stream row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The statement answers no row and `refuse.sql` runs after it: a lone
    /// append in autocommit has written nothing, and its common path stays
    /// one lean statement.
    After,
    /// The statement calls `refuse_append` itself, so that a refusal fails
    /// the transaction before the statements after it (units of work,
    /// appends in a transaction of the caller's).
    Within,
}

/// The append statements, one per stream step, shape, refusal and with or
/// without `NOTIFY` (see `sql/append/README.md`), and the refusal that runs
/// after a lone append that wrote nothing.
#[derive(Debug)]
pub(crate) struct AppendStatements {
    statements: Vec<String>,
    /// `write_group.sql` for each of [`GROUP_SIZES`].
    groups: Vec<String>,
    pub(crate) refuse: String,
}

/// The sizes of the group statements (`sql/append/write_group.sql`): a
/// group of lone appends takes the smallest that holds it, padded with
/// appends of NULLs. Small groups, the common ones, fit exactly; larger ones
/// are padded by at most a third, so that a connection prepares a dozen
/// statements, not one per group size (each keeps its plan in the server
/// process of every pooled connection).
pub(crate) const GROUP_SIZES: [usize; 13] = [2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64];

/// The parameters of one append in a group statement
/// (`sql/append/group_event.sql`).
pub(crate) const GROUP_COLUMNS: usize = 11;

impl AppendStatements {
    fn new(schema: &SchemaName) -> Self {
        let steps = [
            (
                StreamStep::Any,
                include_str!("../sql/append/stream_any.sql"),
            ),
            (
                StreamStep::New,
                include_str!("../sql/append/stream_new.sql"),
            ),
            (
                StreamStep::Exists,
                include_str!("../sql/append/stream_exists.sql"),
            ),
            (
                StreamStep::Existing,
                include_str!("../sql/append/stream_existing.sql"),
            ),
        ];
        let event = include_str!("../sql/append/write_event.sql").trim_end();
        let event_written = include_str!("../sql/append/event_written.sql").trim_end();
        let event_written_versioned =
            include_str!("../sql/append/event_written_versioned.sql").trim_end();
        let event_answer = format!(
            "answer AS (\n{event}\n{}\n)",
            include_str!("../sql/append/event_answer.sql").trim_end()
        );
        // Each shape's write as CTEs ending in `answer`, and its channel: the
        // shape's last parameter.
        let writes = [
            (Shape::Event, event_answer.as_str(), "$13"),
            (
                Shape::Batch,
                include_str!("../sql/append/write_batch.sql").trim_end(),
                "$25",
            ),
        ];
        let refusals = [
            (Refusal::After, ""),
            (
                Refusal::Within,
                include_str!("../sql/append/refuse_in_unit.sql"),
            ),
        ];
        let answers = [
            (false, include_str!("../sql/append/answer.sql").trim_end()),
            (
                true,
                include_str!("../sql/append/answer_notify.sql").trim_end(),
            ),
        ];
        // In the order `get` indexes them.
        let mut statements = Vec::with_capacity(32);
        for (kind, step) in steps {
            let step = step.trim_end();
            // The caller knows the version a single event gets from a
            // stream it expects at a version (none, or an exact one).
            let written = match kind {
                StreamStep::New | StreamStep::Existing => event_written,
                StreamStep::Any | StreamStep::Exists => event_written_versioned,
            };
            for (shape, write, channel) in writes {
                for (refusal, refuse) in refusals {
                    for (notify, answer) in answers {
                        // A single event that neither refuses within nor
                        // notifies needs no `answer` around its INSERT: the
                        // INSERT is the statement, one CTE and one scan
                        // fewer for the server to set up at every append,
                        // and it answers with the fewest columns that say
                        // what was written.
                        let sql = if shape == Shape::Event && refusal == Refusal::After && !notify {
                            format!("WITH\n{step}\n{event}\n{written}")
                        } else {
                            format!("WITH\n{step},\n{write}\n{answer}\n{refuse}")
                                .replace("{channel}", channel)
                        };
                        statements.push(schema.statement(&sql));
                    }
                }
            }
        }
        AppendStatements {
            statements,
            groups: GROUP_SIZES
                .iter()
                .map(|&size| group_statement(schema, size))
                .collect(),
            refuse: schema.statement(include_str!("../sql/append/refuse.sql")),
        }
    }

    /// The group statement for `appends` single-event appends, its number,
    /// and the number of appends it takes; `None` for fewer than two (one
    /// goes as its lone statement) or more than the largest of
    /// [`GROUP_SIZES`].
    pub(crate) fn group(&self, appends: usize) -> Option<(&str, usize, usize)> {
        if appends < 2 {
            return None;
        }
        let index = GROUP_SIZES.iter().position(|&size| size >= appends)?;
        Some((
            &self.groups[index],
            self.statements.len() + index,
            GROUP_SIZES[index],
        ))
    }

    /// The statement for `step` and `shape` that refuses as `refusal` says
    /// and, with `notify`, sends `NOTIFY` at commit.
    pub(crate) fn get(
        &self,
        step: StreamStep,
        shape: Shape,
        refusal: Refusal,
        notify: bool,
    ) -> &str {
        &self.statements[Self::index(step, shape, refusal, notify)]
    }

    /// How many statements there are: [`AppendStatements::index`] numbers
    /// the lone ones from 0, the group statements follow.
    pub(crate) fn len(&self) -> usize {
        self.statements.len() + self.groups.len()
    }

    /// The number of the statement [`AppendStatements::get`] returns.
    pub(crate) fn index(step: StreamStep, shape: Shape, refusal: Refusal, notify: bool) -> usize {
        let step = match step {
            StreamStep::Any => 0,
            StreamStep::New => 1,
            StreamStep::Exists => 2,
            StreamStep::Existing => 3,
        };
        let shape = match shape {
            Shape::Event => 0,
            Shape::Batch => 1,
        };
        let refusal = match refusal {
            Refusal::After => 0,
            Refusal::Within => 1,
        };
        ((step * 2 + shape) * 2 + refusal) * 2 + usize::from(notify)
    }
}

/// `write_group.sql` for `size` appends: a `group_stream.sql` and a
/// `group_event.sql` per append, its parameters numbered after those of the
/// appends before it.
fn group_statement(schema: &SchemaName, size: usize) -> String {
    let stream = schema.statement(include_str!("../sql/append/group_stream.sql"));
    let event = schema.statement(include_str!("../sql/append/group_event.sql"));
    let place = |template: &str, place: usize| {
        let first = place * GROUP_COLUMNS;
        // From the last column down, so that {1} never matches in {10}.
        let mut sql = template.replace("{n}", &place.to_string());
        for column in (1..=GROUP_COLUMNS).rev() {
            sql = sql.replace(&format!("{{{column}}}"), &format!("${}", first + column));
        }
        sql
    };
    let parts = |template: &str, separator: &str| {
        let parts: Vec<String> = (0..size)
            .map(|at| place(template, at).trim_end().to_owned())
            .collect();
        parts.join(separator) + "\n"
    };
    // The comments go first: they name the placeholders too.
    schema
        .statement(include_str!("../sql/append/write_group.sql"))
        .replace("{streams}\n", &parts(&stream, ",\n"))
        .replace("{events}\n", &parts(&event, "\nUNION ALL\n"))
}

/// The store's statements for one schema, rendered once.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) append: AppendStatements,
    pub(crate) read_stream: String,
    pub(crate) read_all: String,
    pub(crate) read_outbox: String,
    pub(crate) stream_version: String,
    pub(crate) load_snapshot: String,
    pub(crate) read_from_snapshot: String,
    pub(crate) command_outcome: String,
    pub(crate) stored_event_id: String,
    pub(crate) held_back_events: String,
    pub(crate) held_back_outbox: String,
    pub(crate) backlog: String,
    pub(crate) horizon: &'static str,
    pub(crate) oldest_blocking_transaction: &'static str,
    pub(crate) notify: &'static str,
    pub(crate) relay: RelayStatements,
}

impl Statements {
    pub(crate) fn new(schema: &SchemaName) -> Self {
        Statements {
            append: AppendStatements::new(schema),
            read_stream: schema.statement(include_str!("../sql/read_stream.sql")),
            read_all: schema.statement(include_str!("../sql/read_all.sql")),
            read_outbox: schema.statement(include_str!("../sql/read_outbox.sql")),
            stream_version: schema.statement(include_str!("../sql/stream_version.sql")),
            load_snapshot: schema.statement(include_str!("../sql/load_snapshot.sql")),
            read_from_snapshot: schema.statement(include_str!("../sql/read_from_snapshot.sql")),
            command_outcome: schema.statement(include_str!("../sql/command_outcome.sql")),
            stored_event_id: schema.statement(include_str!("../sql/stored_event_id.sql")),
            held_back_events: schema.statement(include_str!("../sql/held_back_events.sql")),
            held_back_outbox: schema.statement(include_str!("../sql/held_back_outbox.sql")),
            backlog: schema.statement(include_str!("../sql/backlog.sql")),
            horizon: include_str!("../sql/horizon.sql"),
            oldest_blocking_transaction: include_str!("../sql/oldest_blocking_transaction.sql"),
            notify: include_str!("../sql/notify.sql"),
            relay: RelayStatements::new(schema),
        }
    }
}

/// The statements of the outbox relays (`sql/relay/`).
#[derive(Debug)]
pub(crate) struct RelayStatements {
    pub(crate) read_shard: String,
    pub(crate) held_back_shard: String,
    pub(crate) checkpoint: String,
    pub(crate) save_checkpoint: String,
    pub(crate) prune: String,
    pub(crate) backlog: String,
    pub(crate) park: String,
    pub(crate) parked: String,
    pub(crate) in_flight: String,
    pub(crate) set_in_flight: String,
}

impl RelayStatements {
    fn new(schema: &SchemaName) -> Self {
        RelayStatements {
            read_shard: schema.render(include_str!("../sql/relay/read_shard.sql")),
            held_back_shard: schema.render(include_str!("../sql/relay/held_back_shard.sql")),
            checkpoint: schema.render(include_str!("../sql/relay/checkpoint.sql")),
            save_checkpoint: schema.render(include_str!("../sql/relay/save_checkpoint.sql")),
            prune: schema.render(include_str!("../sql/relay/prune.sql")),
            backlog: schema.render(include_str!("../sql/relay/backlog.sql")),
            park: schema.render(include_str!("../sql/relay/park.sql")),
            parked: schema.render(include_str!("../sql/relay/parked.sql")),
            in_flight: schema.render(include_str!("../sql/relay/in_flight.sql")),
            set_in_flight: schema.render(include_str!("../sql/relay/set_in_flight.sql")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for good in ["annals", "Orders_2", "_x", &"s".repeat(63)] {
            assert!(SchemaName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "a\"b",
            "a;drop schema x",
            "pg_mine",
            "PG_Mine",
            "ünï",
            &"s".repeat(64),
        ] {
            assert!(
                matches!(SchemaName::new(bad), Err(Error::InvalidSchemaName { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn statements_name_the_quoted_schema() {
        let schema = SchemaName::new("Orders").unwrap();
        let statements = Statements::new(&schema);
        let append =
            statements
                .append
                .get(StreamStep::Existing, Shape::Batch, Refusal::Within, false);
        assert!(append.starts_with("WITH\n"), "{append}");
        assert!(append.contains("UPDATE \"Orders\".streams"), "{append}");
        assert!(append.contains("INSERT INTO \"Orders\".outbox"), "{append}");
        assert!(!statements.read_all.contains("{schema}"));
    }

    #[test]
    fn statements_are_sent_without_comments_or_blank_lines() {
        let statements = Statements::new(&SchemaName::new("annals").unwrap());
        for sql in statements
            .append
            .statements
            .iter()
            .chain(&statements.append.groups)
            .chain([&statements.append.refuse, &statements.read_all])
        {
            assert!(!sql.contains("--"), "{sql}");
            assert!(!sql.contains("\n\n"), "{sql}");
            assert!(!sql.contains("\n "), "{sql}");
            assert!(!sql.contains('{'), "{sql}");
        }
    }

    #[test]
    fn a_group_takes_the_smallest_statement_that_holds_it() {
        let statements = Statements::new(&SchemaName::new("annals").unwrap());
        let append = &statements.append;
        let lone = append.len() - GROUP_SIZES.len();
        let (_, number, size) = append.group(2).unwrap();
        assert_eq!((number, size), (lone, 2));
        let (_, number, size) = append.group(5).unwrap();
        assert_eq!((number, size), (lone + 3, 5));
        let (_, number, size) = append.group(9).unwrap();
        assert_eq!((number, size), (lone + 7, 12));
        let (sql, number, size) = append.group(64).unwrap();
        assert_eq!((number, size), (lone + GROUP_SIZES.len() - 1, 64));
        assert!(append.group(65).is_none());
        assert!(append.group(1).is_none());
        assert!(append.group(0).is_none());
        // Every parameter of every append, and nothing after them.
        let last = 64 * GROUP_COLUMNS;
        assert!(sql.contains(&format!("${last}::jsonb")), "{sql}");
        assert!(!sql.contains(&format!("${}", last + 1)), "{sql}");
        for append in 0..64 {
            let stream_id = append * GROUP_COLUMNS + 1;
            let stream = format!("stream_{append} AS (\nUPDATE");
            assert_eq!(sql.matches(&stream).count(), 1, "{sql}");
            assert!(
                sql.contains(&format!("WHERE s.stream_id = ${stream_id}::text\n")),
                "{sql}"
            );
            assert!(sql.contains(&format!("FROM stream_{append}\n")), "{sql}");
        }
        assert_eq!(sql.matches("UNION ALL").count(), 63, "{sql}");
    }

    #[test]
    fn only_the_statements_that_need_them_notify_and_refuse() {
        let statements = Statements::new(&SchemaName::new("annals").unwrap());
        let steps = [
            StreamStep::Any,
            StreamStep::New,
            StreamStep::Exists,
            StreamStep::Existing,
        ];
        for step in steps {
            for (shape, channel) in [(Shape::Event, "$13"), (Shape::Batch, "$25")] {
                for refusal in [Refusal::After, Refusal::Within] {
                    for notify in [false, true] {
                        let sql = statements.append.get(step, shape, refusal, notify);
                        let what = format!("{step:?} {shape:?} {refusal:?} {notify}: {sql}");
                        assert_eq!(sql.contains("pg_notify"), notify, "{what}");
                        assert_eq!(
                            sql.contains(&format!("pg_notify({channel}::text")),
                            notify,
                            "{what}"
                        );
                        assert_eq!(
                            sql.contains("refuse_append"),
                            refusal == Refusal::Within,
                            "{what}"
                        );
                        // Only a lone single event without NOTIFY is its
                        // INSERT; the others answer from the CTE `answer`.
                        let bare = shape == Shape::Event && refusal == Refusal::After && !notify;
                        assert_eq!(!sql.contains("answer AS ("), bare, "{what}");
                        assert_eq!(sql.contains(")\nINSERT INTO"), bare, "{what}");
                        let returning = match step {
                            StreamStep::New | StreamStep::Existing => "RETURNING tx_id, position\n",
                            StreamStep::Any | StreamStep::Exists => {
                                "RETURNING stream_version, tx_id, position\n"
                            }
                        };
                        assert_eq!(sql.ends_with(returning), bare, "{what}");
                    }
                }
            }
        }
        assert!(statements.append.refuse.contains("refuse_append"));
    }
}
