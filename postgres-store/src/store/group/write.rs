//! Writing a group of lone appends in one round trip.
//!
//! The single events of most commands (one event to an existing stream at
//! an exact version, nothing else) join one group statement
//! (`sql/append/write_group.sql`): the server then sets up one statement
//! and one `INSERT` for all of them instead of one of each per append,
//! which is most of what a small append costs it. Every other append of
//! the group goes as its own statement beside it, all in one transaction:
//! in autocommit when the group statement is all there is, else between
//! `BEGIN` and `COMMIT`, sent together.

use std::sync::Arc;
use std::time::Instant;

use annals::{AppendOutcome, AppendRequest, Error, GlobalPosition};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use crate::error::{corrupt, is_transient};
use crate::schema::{AppendStatements, GROUP_COLUMNS, Refusal};
use crate::store::PgEventStore;
use crate::store::append::{paired, prepare_calls, record, send_transaction, single};
use crate::store::call::{AppendCall, GROUP_PADDING};
use crate::store::rows;

/// The parameters of one append in the group statement.
type GroupRow<'a> = [&'a (dyn ToSql + Sync); GROUP_COLUMNS];

/// Why a group gave no outcomes.
enum GroupFailure {
    /// Nothing was written: every append goes again alone.
    RolledBack,
    /// The outcome is unknown (the connection failed): every append fails
    /// with this error.
    Unknown(Arc<tokio_postgres::Error>),
    /// The group was written but its answer does not decode: every append
    /// fails, as a lone append whose answer does not decode would.
    Unreadable(Error),
}

impl GroupFailure {
    /// A statement's failure: the server refused it (and wrote none of the
    /// transaction), or the connection failed before the outcome was known.
    fn of(error: tokio_postgres::Error) -> Self {
        if error.as_db_error().is_some() {
            GroupFailure::RolledBack
        } else {
            GroupFailure::Unknown(Arc::new(error))
        }
    }
}

/// What a group wrote for one of its appends.
enum Written {
    /// The answer of the append's own statement.
    Row(Row),
    /// The global position of its event, written by the group statement.
    Joined(GlobalPosition),
}

/// How a group's appends are sent: which join the group statement, and
/// which go as statements of their own. Places are indexes into the
/// group's calls.
struct Split<'a, 's> {
    /// The group statement (its text, number and size) and the appends it
    /// writes, with their parameters; `None` when fewer than two can join.
    group: Option<(GroupStatement<'s>, Vec<(usize, GroupRow<'a>)>)>,
    /// The appends sent as statements of their own, in place order.
    separate: Vec<usize>,
}

/// A group statement's text, its number among the prepared append
/// statements, and the number of appends it takes.
type GroupStatement<'s> = (&'s str, usize, usize);

impl<'a, 's> Split<'a, 's> {
    /// Joins the appends that can join, when at least two can and a group
    /// statement holds them; otherwise every append goes on its own.
    fn of(calls: &[&'a AppendCall<'_>], statements: &'s AppendStatements) -> Self {
        let mut joined = Vec::new();
        let mut separate = Vec::new();
        for (place, call) in calls.iter().enumerate() {
            match call.group_row() {
                Some(row) => joined.push((place, row)),
                None => separate.push(place),
            }
        }
        match statements.group(joined.len()) {
            Some(statement) => Split {
                group: Some((statement, joined)),
                separate,
            },
            None => Split {
                group: None,
                separate: (0..calls.len()).collect(),
            },
        }
    }

    /// The appends the group statement writes.
    fn joined(&self) -> &[(usize, GroupRow<'a>)] {
        self.group.as_ref().map_or(&[], |(_, joined)| joined)
    }

    /// The group statement's parameters, padded to `size` appends.
    fn group_params(&self, size: usize) -> Vec<&'a (dyn ToSql + Sync)> {
        let mut params = Vec::with_capacity(size * GROUP_COLUMNS);
        for (_, row) in self.joined() {
            params.extend_from_slice(row);
        }
        for _ in self.joined().len()..size {
            params.extend_from_slice(&GROUP_PADDING);
        }
        params
    }

    /// The place of the joined append to `stream`, which a group holds one
    /// append of at most.
    fn joined_place(&self, calls: &[&AppendCall<'_>], stream: &str) -> Option<usize> {
        self.joined()
            .iter()
            .map(|&(place, _)| place)
            .find(|&place| calls[place].request.stream.as_str() == stream)
    }
}

impl PgEventStore {
    /// The outcome of each of `requests` written together, or `None` for
    /// one that must go again alone.
    pub(super) async fn append_group(
        &self,
        requests: &[AppendRequest],
    ) -> Vec<Option<Result<AppendOutcome, Error>>> {
        let started = Instant::now();
        // Groups of more than one append.
        metrics::histogram!("annals_append_group_size", "backend" => "postgres")
            .record(requests.len() as f64);
        let channel = self.notify_channel();
        let mut outcomes: Vec<Option<Result<AppendOutcome, Error>>> =
            requests.iter().map(|_| None).collect();
        let mut checked = Vec::with_capacity(requests.len());
        for (index, request) in requests.iter().enumerate() {
            match AppendCall::checked(request, &self.inner.limits, channel) {
                Ok(call) => checked.push((index, call)),
                Err(error) => outcomes[index] = Some(Err(error)),
            }
        }
        if checked.is_empty() {
            return outcomes;
        }
        // The order in which the statements lock stream rows.
        checked.sort_by(|(_, a), (_, b)| a.request.stream.cmp(&b.request.stream));
        let calls: Vec<&AppendCall<'_>> = checked.iter().map(|(_, call)| call).collect();
        let failed = |error: Error| {
            record(started, "error");
            Some(Err(error))
        };
        let written = match self.attempt_group(&calls).await {
            Ok(written) => written,
            Err(GroupFailure::RolledBack) => return outcomes,
            Err(GroupFailure::Unknown(error)) => {
                let retriable = is_transient(&error);
                for (index, _) in &checked {
                    let error = Error::backend("postgres", retriable, Arc::clone(&error));
                    outcomes[*index] = failed(error);
                }
                return outcomes;
            }
            Err(GroupFailure::Unreadable(error)) => {
                for (index, _) in &checked {
                    outcomes[*index] = failed(corrupt(error.to_string()));
                }
                return outcomes;
            }
        };
        let mut newest = None;
        for ((index, call), written) in checked.iter().zip(written) {
            let outcome = match written {
                None => continue,
                Some(Written::Row(row)) => {
                    rows::append_outcome(&row, &call.request.stream, call.written_version())
                }
                Some(Written::Joined(position)) => joined_outcome(call, position),
            };
            if let Ok(outcome) = &outcome {
                newest = newest.max(Some(outcome.last_position.commit));
                record(started, "ok");
            }
            outcomes[*index] = Some(outcome);
        }
        if let Some(commit) = newest {
            self.appended(commit);
        }
        outcomes
    }

    /// Writes `calls` in one round trip (see the module's doc). What each
    /// call wrote, `None` for one whose stream row could not be written.
    async fn attempt_group(
        &self,
        calls: &[&AppendCall<'_>],
    ) -> Result<Vec<Option<Written>>, GroupFailure> {
        let client = self
            .inner
            .pool
            .get()
            .await
            .map_err(|_| GroupFailure::RolledBack)?;
        let appends = &self.inner.sql.append;
        let split = Split::of(calls, appends);
        let mut statements: Vec<Statement> = Vec::with_capacity(split.separate.len() + 1);
        let mut params: Vec<Vec<&(dyn ToSql + Sync)>> = Vec::with_capacity(statements.capacity());
        if let Some(((sql, number, size), _)) = split.group {
            let prepared = &self.inner.prepared;
            let statement = prepared.statement(&client, number, sql, &[]).await;
            statements.push(statement.map_err(GroupFailure::of)?);
            params.push(split.group_params(size));
        }
        let separate: Vec<&AppendCall<'_>> =
            split.separate.iter().map(|&place| calls[place]).collect();
        let prepared = prepare_calls(&client, &separate, appends, Refusal::After).await;
        statements.extend(prepared.map_err(GroupFailure::of)?);
        params.extend(separate.iter().map(|call| call.params()));

        let sent = paired(&statements, &params);
        let mut answers = match &sent[..] {
            // One statement is atomic by itself.
            [only] if split.group.is_some() => vec![client.query(only.0, only.1).await],
            _ => {
                let transaction = send_transaction(&client, &sent)
                    .await
                    .map_err(GroupFailure::of)?;
                transaction.begun.map_err(GroupFailure::of)?;
                // A failed statement turns COMMIT into a rollback without an
                // error: the statements' answers below say so.
                transaction.committed.map_err(GroupFailure::of)?;
                transaction.statements
            }
        }
        .into_iter();

        let mut written: Vec<Option<Written>> = calls.iter().map(|_| None).collect();
        if split.group.is_some() {
            // The group statement's answer comes first.
            let rows = answers.next().transpose().map_err(GroupFailure::of)?;
            for row in rows.unwrap_or_default() {
                let (stream, position) =
                    rows::joined_append(&row).map_err(GroupFailure::Unreadable)?;
                if let Some(place) = split.joined_place(calls, stream) {
                    written[place] = Some(Written::Joined(position));
                }
            }
        }
        for (&place, answer) in split.separate.iter().zip(answers) {
            written[place] = single(answer).map_err(GroupFailure::of)?.map(Written::Row);
        }
        Ok(written)
    }
}

/// The outcome of an append whose event the group statement wrote at
/// `position`: the version after the one it expected.
fn joined_outcome(call: &AppendCall<'_>, position: GlobalPosition) -> Result<AppendOutcome, Error> {
    let version = call
        .written_version()
        .ok_or_else(|| corrupt("a grouped append without an exact expected version"))?;
    Ok(AppendOutcome {
        stream: call.request.stream.clone(),
        first_version: version,
        last_version: version,
        last_position: position,
        duplicate: false,
    })
}

#[cfg(test)]
mod tests {
    use annals::{ExpectedVersion, Limits, Metadata, NewEvent, Payload, StreamId};

    use super::*;
    use crate::schema::{SchemaName, Statements};

    fn event() -> NewEvent {
        NewEvent::raw(
            "Happened",
            1,
            Payload::encode(&0).unwrap(),
            Metadata::default(),
        )
    }

    fn request(stream: &str, expected: ExpectedVersion, events: usize) -> AppendRequest {
        let mut request = AppendRequest::new(StreamId::new(stream).unwrap(), expected);
        for _ in 0..events {
            request = request.event(event());
        }
        request
    }

    fn split_of(requests: &[AppendRequest]) -> (Vec<usize>, Vec<usize>) {
        split_notifying(requests, None)
    }

    fn split_notifying(
        requests: &[AppendRequest],
        channel: Option<&str>,
    ) -> (Vec<usize>, Vec<usize>) {
        let statements = Statements::new(&SchemaName::new("annals").unwrap());
        let calls: Vec<AppendCall<'_>> = requests
            .iter()
            .map(|request| AppendCall::checked(request, &Limits::default(), channel).unwrap())
            .collect();
        let calls: Vec<&AppendCall<'_>> = calls.iter().collect();
        let split = Split::of(&calls, &statements.append);
        let joined = split.joined().iter().map(|&(place, _)| place).collect();
        (joined, split.separate)
    }

    #[test]
    fn single_events_at_exact_versions_of_existing_streams_join() {
        let requests = [
            request("a", ExpectedVersion::Exact(3), 1),
            request("b", ExpectedVersion::NoStream, 1),
            request("c", ExpectedVersion::Exact(1), 2),
            request("d", ExpectedVersion::Any, 1),
            request("e", ExpectedVersion::Exact(7), 1),
            request("f", ExpectedVersion::StreamExists, 1),
            request("g", ExpectedVersion::Exact(1), 1).snapshot(annals::NewSnapshot {
                state_version: 1,
                state: Payload::encode(&0).unwrap(),
            }),
        ];
        assert_eq!(split_of(&requests), (vec![0, 4], vec![1, 2, 3, 5, 6]));
    }

    #[test]
    fn one_append_that_could_join_goes_on_its_own() {
        let requests = [
            request("a", ExpectedVersion::Exact(3), 1),
            request("b", ExpectedVersion::NoStream, 1),
        ];
        assert_eq!(split_of(&requests), (vec![], vec![0, 1]));
    }

    #[test]
    fn appends_that_notify_in_their_transaction_go_on_their_own() {
        let requests = [
            request("a", ExpectedVersion::Exact(3), 1),
            request("b", ExpectedVersion::Exact(1), 1),
        ];
        assert_eq!(
            split_notifying(&requests, Some("annals")),
            (vec![], vec![0, 1])
        );
    }
}
