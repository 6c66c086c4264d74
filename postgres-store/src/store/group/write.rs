//! Writing a group of lone appends in one round trip.
//!
//! The single events of most commands (one event to an existing stream at
//! an exact version, nothing else) join group statements
//! (`grouped` in `sql/append/append.sql`): the server then sets up one statement
//! and one `INSERT` for many of them instead of one of each per append,
//! which is most of what a small append costs it. The group's appends are
//! written in stream-id order, as a unit of work's are, so that two
//! transactions never lock two stream rows in opposite orders: each run of
//! appends that can join is one group statement, every other append its
//! lone statement. All of it is one transaction, sent in one round trip:
//! in autocommit when one group statement is all there is (most groups),
//! else between `BEGIN` and `COMMIT`.

use std::sync::Arc;
use std::time::Instant;

use annals::{AppendOutcome, AppendRequest, Error, GlobalPosition};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement};

use crate::error::{corrupt, is_transient};
use crate::rows;
use crate::statements::{AppendStatements, GROUP_COLUMNS, Refusal};
use crate::store::PgEventStore;
use crate::store::append::{paired, prepare_call, record, send_transaction};
use crate::store::call::{AppendCall, GROUP_PADDING};

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

/// A group statement's text, its number among the prepared append
/// statements, and the number of appends it takes.
type GroupStatement<'s> = (&'s str, usize, usize);

/// One statement of a group's transaction. Places are indexes into the
/// group's calls, which are in stream-id order.
enum Part<'a, 's> {
    /// Two or more consecutive appends that one group statement writes,
    /// with their parameters.
    Joined(GroupStatement<'s>, Vec<(usize, GroupRow<'a>)>),
    /// An append sent as its lone statement.
    Alone(usize),
}

impl<'a> Part<'a, '_> {
    /// The parts of a group, in the order of its calls, so that stream rows
    /// are locked in stream-id order across the transaction, as in a unit
    /// of work: each run of two or more appends that can join is one group
    /// statement, every other append its lone statement. Most groups are
    /// one run.
    fn split<'s>(
        calls: &[&'a AppendCall<'_>],
        statements: &'s AppendStatements,
    ) -> Vec<Part<'a, 's>> {
        let mut parts = Vec::new();
        let mut run: Vec<(usize, GroupRow<'a>)> = Vec::new();
        let end_run =
            |run: &mut Vec<(usize, GroupRow<'a>)>, parts: &mut Vec<Part<'a, 's>>| match statements
                .group(run.len())
            {
                Some(statement) => parts.push(Part::Joined(statement, std::mem::take(run))),
                None => parts.extend(run.drain(..).map(|(place, _)| Part::Alone(place))),
            };
        for (place, call) in calls.iter().enumerate() {
            match call.group_row() {
                Some(row) => run.push((place, row)),
                None => {
                    end_run(&mut run, &mut parts);
                    parts.push(Part::Alone(place));
                }
            }
        }
        end_run(&mut run, &mut parts);
        parts
    }

    /// The parameters of this part's statement.
    fn params(&self, calls: &[&'a AppendCall<'_>]) -> Vec<&'a (dyn ToSql + Sync)> {
        match self {
            Part::Alone(place) => calls[*place].params(),
            Part::Joined((_, _, size), joined) => {
                let mut params = Vec::with_capacity(size * GROUP_COLUMNS);
                for (_, row) in joined {
                    params.extend_from_slice(row);
                }
                for _ in joined.len()..*size {
                    params.extend_from_slice(&GROUP_PADDING);
                }
                params
            }
        }
    }

    /// What this part's statement wrote, from its answer, into `written`.
    fn read(
        &self,
        calls: &[&AppendCall<'_>],
        answer: Result<Vec<Row>, tokio_postgres::Error>,
        written: &mut [Option<Written>],
    ) -> Result<(), GroupFailure> {
        let rows = answer.map_err(GroupFailure::of)?;
        match self {
            Part::Alone(place) => written[*place] = rows.into_iter().next().map(Written::Row),
            Part::Joined(_, joined) => {
                for row in rows {
                    let (stream, position) =
                        rows::joined_append(&row).map_err(GroupFailure::Unreadable)?;
                    // A group holds one append per stream.
                    let place = joined
                        .iter()
                        .map(|&(place, _)| place)
                        .find(|&place| calls[place].request.stream.as_str() == stream);
                    if let Some(place) = place {
                        written[place] = Some(Written::Joined(position));
                    }
                }
            }
        }
        Ok(())
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
            match AppendCall::checked(request, &self.inner.db.limits, channel) {
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
            self.inner.db.notifications.appended(commit);
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
            .db
            .pool
            .get()
            .await
            .map_err(|_| GroupFailure::RolledBack)?;
        let appends = &self.inner.db.sql.append;
        let parts = Part::split(calls, appends);
        let mut statements: Vec<Statement> = Vec::with_capacity(parts.len());
        for part in &parts {
            let statement = match part {
                Part::Joined((sql, number, _), _) => {
                    let prepared = &self.inner.prepared;
                    prepared.statement(&client, *number, sql, &[]).await
                }
                Part::Alone(place) => {
                    prepare_call(&client, calls[*place], appends, Refusal::Afterwards).await
                }
            };
            statements.push(statement.map_err(GroupFailure::of)?);
        }
        let params: Vec<Vec<&(dyn ToSql + Sync)>> =
            parts.iter().map(|part| part.params(calls)).collect();
        let sent = paired(&statements, &params);
        let answers = match (&sent[..], &parts[..]) {
            // One statement is atomic by itself.
            ([only], [Part::Joined(..)]) => vec![client.query(only.0, only.1).await],
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
        };
        let mut written: Vec<Option<Written>> = calls.iter().map(|_| None).collect();
        for (part, answer) in parts.iter().zip(answers) {
            part.read(calls, answer, &mut written)?;
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
    use crate::schema::SchemaName;
    use crate::statements::Statements;

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

    /// The places of each part's appends.
    fn split_of(requests: &[AppendRequest]) -> Vec<Vec<usize>> {
        split_notifying(requests, None)
    }

    fn split_notifying(requests: &[AppendRequest], channel: Option<&str>) -> Vec<Vec<usize>> {
        let statements = Statements::new(&SchemaName::new("annals").unwrap());
        let calls: Vec<AppendCall<'_>> = requests
            .iter()
            .map(|request| AppendCall::checked(request, &Limits::default(), channel).unwrap())
            .collect();
        let calls: Vec<&AppendCall<'_>> = calls.iter().collect();
        Part::split(&calls, &statements.append)
            .iter()
            .map(|part| match part {
                Part::Joined(_, joined) => joined.iter().map(|&(place, _)| place).collect(),
                Part::Alone(place) => vec![*place],
            })
            .collect()
    }

    #[test]
    fn runs_of_single_events_at_exact_versions_of_existing_streams_join() {
        let snapshot = annals::NewSnapshot {
            state_version: 1,
            state: Payload::encode(&0).unwrap(),
        };
        // In stream-id order, as a group's calls are.
        let requests = [
            request("a", ExpectedVersion::Exact(3), 1),
            request("b", ExpectedVersion::Exact(1), 1),
            request("c", ExpectedVersion::NoStream, 1),
            request("d", ExpectedVersion::Exact(1), 2),
            request("e", ExpectedVersion::Exact(7), 1),
            request("f", ExpectedVersion::Any, 1),
            request("g", ExpectedVersion::Exact(2), 1),
            request("h", ExpectedVersion::Exact(9), 1),
            request("i", ExpectedVersion::Exact(1), 1),
            request("j", ExpectedVersion::StreamExists, 1),
            request("k", ExpectedVersion::Exact(1), 1).snapshot(snapshot),
        ];
        assert_eq!(
            split_of(&requests),
            [
                vec![0, 1],
                vec![2],
                vec![3],
                vec![4],
                vec![5],
                vec![6, 7, 8],
                vec![9],
                vec![10]
            ]
        );
    }

    #[test]
    fn appends_that_notify_in_their_transaction_go_on_their_own() {
        let requests = [
            request("a", ExpectedVersion::Exact(3), 1),
            request("b", ExpectedVersion::Exact(1), 1),
        ];
        assert_eq!(
            split_notifying(&requests, Some("annals")),
            [vec![0], vec![1]]
        );
        assert_eq!(split_of(&requests), [vec![0, 1]]);
    }
}
