//! The append statements: the variants of `sql/append/append.sql`, lone
//! and for groups.

use annals::ExpectedVersion;
use tokio_postgres::types::Type;

use super::template::expand;
use crate::schema::SchemaName;

/// What an append statement takes besides its stream row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One event's columns, no snapshot, no outbox message: most commands.
    OneEvent,
    /// The events, the snapshot and the outbox messages as arrays: anything
    /// else.
    Arrays,
}

/// How an append statement refuses when it cannot write its stream row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The statement answers no row and `refuse.sql` runs after it: a lone
    /// append in autocommit has written nothing, and its common path stays
    /// one lean statement.
    Afterwards,
    /// The statement calls `refuse_append` itself, so that a refusal fails
    /// the transaction before the statements after it (units of work,
    /// appends in a transaction of the caller's).
    InStatement,
}

/// The types of the parameters every lone append statement starts with ($1
/// stream id, $2 expected version), given when preparing: not every variant
/// uses $2, and the server need not infer them.
pub(crate) const LEADING_TYPES: [Type; 2] = [Type::TEXT, Type::INT8];

/// The section of `append.sql` for each expected version, in the order of
/// [`expected_index`].
const EXPECTED_SECTIONS: [&str; 4] = ["any", "no_stream", "stream_exists", "exact"];

/// The number of the section of `expected`: an exact version 0 is no
/// stream yet.
fn expected_index(expected: ExpectedVersion) -> usize {
    match expected {
        ExpectedVersion::Any => 0,
        ExpectedVersion::NoStream | ExpectedVersion::Exact(0) => 1,
        ExpectedVersion::StreamExists => 2,
        ExpectedVersion::Exact(_) => 3,
    }
}

/// The sizes of the group statements (`grouped` in `sql/append/append.sql`): a group of
/// lone appends takes the smallest that holds it, padded with appends of
/// NULLs. Small groups, the common ones, fit exactly; larger ones are
/// padded by at most a third, so that a connection prepares a dozen
/// statements, not one per group size (each keeps its plan in the server
/// process of every pooled connection).
pub(crate) const GROUP_SIZES: [usize; 13] = [2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64];

/// The parameters of one append in a group statement: those of a lone
/// single-event append, without the channel.
pub(crate) const GROUP_COLUMNS: usize = 12;

/// Every variant of the lone append statement (one per expected version,
/// shape, refusal and with or without `NOTIFY`), the group statements, and
/// the refusal that runs after a lone append that wrote nothing.
#[derive(Debug)]
pub(crate) struct AppendStatements {
    lone: Vec<String>,
    /// The group statement for each of [`GROUP_SIZES`].
    groups: Vec<String>,
    pub(crate) refuse: String,
    pub(crate) stored_event_id: String,
}

impl AppendStatements {
    pub(super) fn new(schema: &SchemaName) -> Self {
        let template = include_str!("../../sql/append/append.sql");
        let mut lone = Vec::with_capacity(32);
        for expected in EXPECTED_SECTIONS {
            for shape in [Shape::OneEvent, Shape::Arrays] {
                for refusal in [Refusal::Afterwards, Refusal::InStatement] {
                    for notify in [false, true] {
                        let sections = sections(expected, shape, refusal, notify);
                        lone.push(schema.fill(&expand(template, &sections, 1)));
                    }
                }
            }
        }
        let grouped = ["exact", "one_event", "grouped"];
        AppendStatements {
            lone,
            groups: GROUP_SIZES
                .iter()
                .map(|&size| schema.fill(&expand(template, &grouped, size)))
                .collect(),
            refuse: schema.statement(include_str!("../../sql/append/refuse.sql")),
            stored_event_id: schema.statement(include_str!("../../sql/stored_event_id.sql")),
        }
    }

    /// The statement for `expected` and `shape` that refuses as `refusal`
    /// says and, with `notify`, sends `NOTIFY` at commit, and its number
    /// among the prepared append statements.
    pub(crate) fn lone(
        &self,
        expected: ExpectedVersion,
        shape: Shape,
        refusal: Refusal,
        notify: bool,
    ) -> (&str, usize) {
        let shape = match shape {
            Shape::OneEvent => 0,
            Shape::Arrays => 1,
        };
        let refusal = match refusal {
            Refusal::Afterwards => 0,
            Refusal::InStatement => 1,
        };
        let number =
            ((expected_index(expected) * 2 + shape) * 2 + refusal) * 2 + usize::from(notify);
        (&self.lone[number], number)
    }

    /// The group statement for `appends` single-event appends, its number
    /// among the prepared append statements, and the number of appends it
    /// takes; `None` for fewer than two (one goes as its lone statement) or
    /// more than the largest of [`GROUP_SIZES`].
    pub(crate) fn group(&self, appends: usize) -> Option<(&str, usize, usize)> {
        if appends < 2 {
            return None;
        }
        let index = GROUP_SIZES.iter().position(|&size| size >= appends)?;
        Some((
            &self.groups[index],
            self.lone.len() + index,
            GROUP_SIZES[index],
        ))
    }

    /// How many numbered statements there are: the lone ones from 0, the
    /// group statements after them.
    pub(crate) fn len(&self) -> usize {
        self.lone.len() + self.groups.len()
    }

    /// Every statement, named, with the types of its leading parameters
    /// as the store prepares it.
    pub(super) fn all(&self) -> impl Iterator<Item = (String, &str, &'static [Type])> {
        let lone = self.lone.iter().enumerate().map(|(number, sql)| {
            let name = format!("append.sql variant {number}");
            (name, sql.as_str(), &LEADING_TYPES[..])
        });
        let groups = GROUP_SIZES.iter().zip(&self.groups).map(|(size, sql)| {
            let name = format!("append.sql grouped for {size} appends");
            (name, sql.as_str(), &[][..])
        });
        let others = [
            ("refuse.sql", &self.refuse),
            ("stored_event_id.sql", &self.stored_event_id),
        ]
        .map(|(name, sql)| (name.to_owned(), sql.as_str(), &[][..]));
        lone.chain(groups).chain(others)
    }
}

/// The sections of `append.sql` of one variant.
fn sections(
    expected: &'static str,
    shape: Shape,
    refusal: Refusal,
    notify: bool,
) -> Vec<&'static str> {
    let mut sections = vec![expected];
    sections.push(match shape {
        Shape::OneEvent => "one_event",
        Shape::Arrays => "arrays",
    });
    // A single event that neither refuses in the statement nor notifies
    // needs no `answer` around its INSERT: the INSERT is the statement, one
    // CTE and one scan fewer for the server to set up at every append.
    let insert_only = shape == Shape::OneEvent && refusal == Refusal::Afterwards && !notify;
    sections.push(if insert_only { "insert_only" } else { "answer" });
    if notify {
        sections.push("notify");
    }
    if refusal == Refusal::InStatement {
        sections.push("refuse_in_statement");
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements() -> AppendStatements {
        AppendStatements::new(&SchemaName::new("annals").unwrap())
    }

    const EXPECTED: [ExpectedVersion; 4] = [
        ExpectedVersion::Any,
        ExpectedVersion::NoStream,
        ExpectedVersion::StreamExists,
        ExpectedVersion::Exact(3),
    ];

    #[test]
    fn a_group_takes_the_smallest_statement_that_holds_it() {
        let append = statements();
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
            let name = match append {
                0 => "stream".to_owned(),
                _ => format!("stream_{append}"),
            };
            let stream = format!("{name} AS (\nUPDATE");
            assert_eq!(sql.matches(&format!("\n{stream}")).count(), 1, "{sql}");
            assert!(
                sql.contains(&format!("WHERE s.stream_id = ${stream_id}::text\n")),
                "{sql}"
            );
            assert!(sql.contains(&format!("FROM {name} s\n")), "{sql}");
        }
        assert_eq!(sql.matches("UNION ALL").count(), 63, "{sql}");
        assert!(
            sql.ends_with("FROM stream_63 s\nRETURNING stream_id, tx_id, position\n"),
            "{sql}"
        );
        assert!(
            !sql.contains("refuse_append") && !sql.contains("pg_notify"),
            "{sql}"
        );
    }

    #[test]
    fn every_variant_has_its_own_number_and_only_what_it_needs() {
        let append = statements();
        let mut numbers = Vec::new();
        for expected in EXPECTED {
            for (shape, channel) in [(Shape::OneEvent, "$13"), (Shape::Arrays, "$25")] {
                for refusal in [Refusal::Afterwards, Refusal::InStatement] {
                    for notify in [false, true] {
                        let (sql, number) = append.lone(expected, shape, refusal, notify);
                        numbers.push(number);
                        let what = format!("{expected:?} {shape:?} {refusal:?} {notify}: {sql}");
                        assert!(sql.starts_with("WITH\n"), "{what}");
                        assert_eq!(sql.contains("pg_notify"), notify, "{what}");
                        assert_eq!(
                            sql.contains(&format!("pg_notify({channel}::text")),
                            notify,
                            "{what}"
                        );
                        assert_eq!(
                            sql.contains("refuse_append"),
                            refusal == Refusal::InStatement,
                            "{what}"
                        );
                        assert_eq!(
                            sql.contains("pg_advisory_xact_lock"),
                            matches!(
                                expected,
                                ExpectedVersion::Any | ExpectedVersion::StreamExists
                            ),
                            "{what}"
                        );
                        assert_eq!(sql.contains("unnest("), shape == Shape::Arrays, "{what}");
                        // Only a lone single event without NOTIFY is its
                        // INSERT; the others answer from the CTE `answer`.
                        let bare =
                            shape == Shape::OneEvent && refusal == Refusal::Afterwards && !notify;
                        assert_eq!(!sql.contains("answer AS ("), bare, "{what}");
                        assert_eq!(sql.contains(")\nINSERT INTO"), bare, "{what}");
                        let returning = match expected {
                            ExpectedVersion::NoStream | ExpectedVersion::Exact(_) => {
                                "RETURNING tx_id, position\n"
                            }
                            _ => "RETURNING stream_version, tx_id, position\n",
                        };
                        assert_eq!(sql.ends_with(returning), bare, "{what}");
                    }
                }
            }
        }
        numbers.sort_unstable();
        assert_eq!(numbers, (0..32).collect::<Vec<_>>());
        assert_eq!(
            append.lone(
                ExpectedVersion::Exact(0),
                Shape::OneEvent,
                Refusal::Afterwards,
                false
            ),
            append.lone(
                ExpectedVersion::NoStream,
                Shape::OneEvent,
                Refusal::Afterwards,
                false
            ),
            "an exact version 0 is no stream yet"
        );
        assert!(append.refuse.contains("refuse_append"));
    }

    #[test]
    fn the_common_append_is_the_update_of_its_stream_row_and_the_insert_of_its_event() {
        let statements = statements();
        let (sql, _) = statements.lone(
            ExpectedVersion::Exact(7),
            Shape::OneEvent,
            Refusal::Afterwards,
            false,
        );
        let (group, _, _) = statements.group(2).unwrap();
        assert!(sql.starts_with("WITH\nstream AS (\nUPDATE"), "{sql}");
        assert_eq!(sql.matches(" AS (").count(), 1, "one CTE: {sql}");
        assert!(sql.contains(")\nINSERT INTO \"annals\".events"), "{sql}");
        assert!(
            sql.ends_with("FROM stream s\nRETURNING tx_id, position\n"),
            "{sql}"
        );
        assert!(
            group.starts_with("WITH\nstream AS (\nUPDATE"),
            "a group starts as the common append does: {group}"
        );
    }
}
