//! Appends: one statement per stream, one round trip per append or unit of
//! work.

use std::time::{Duration, Instant};

use annals::{AppendOutcome, AppendRequest, Error};
use futures::future::join_all;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, Row, Statement};
use uuid::Uuid;

use super::call::{AppendCall, Calls};
use super::{PgEventStore, rows};
use crate::Notify;
use crate::error::{backend, corrupt, pool};
use crate::schema::{AppendStatements, Refusal};

/// The SQLSTATE `refuse_append` raises on a version conflict, with the
/// actual version in DETAIL (see migrations/0002_refuse_append.sql). Class
/// `ZA` is outside the classes PostgreSQL and the SQL standard use.
const VERSION_CONFLICT: &str = "ZA001";
/// The unique constraint on event ids (migrations/0001_tables.sql).
const EVENT_ID_KEY: &str = "events_event_id_key";
/// The unique index on the command ids that appends claim
/// (migrations/0001_tables.sql): violated when a concurrent append with the
/// same command id committed first.
const COMMAND_ID_KEY: &str = "events_append_command_id_idx";
/// Attempts of one append when trying again resolves the failure at once (a
/// concurrent writer changed the stream row while the statement ran, or a
/// deadlock); nothing was written by the failed attempts.
const MAX_ATTEMPTS: u32 = 5;
/// The types of the parameters every append statement starts with ($1
/// stream id, $2 expected version), given so that the server need not infer
/// them when preparing.
pub(super) const LEADING_TYPES: [Type; 2] = [Type::TEXT, Type::INT8];
/// The types of the parameters of `refuse.sql`.
const REFUSAL_TYPES: [Type; 3] = [Type::TEXT, Type::INT8, Type::UUID];

/// What follows a failed attempt.
enum Next {
    /// Try again at once.
    Again,
    /// The call at this index (of those attempted) is a command that ran
    /// already: its first outcome.
    Found(usize, AppendOutcome),
    /// The append fails.
    Fail(Error),
}

/// Why an attempt failed.
pub(super) enum Failure {
    Pool(deadpool_postgres::PoolError),
    /// A statement failed: the call at `call` (an index into the calls
    /// attempted), or the transaction around them when `None`.
    Statement {
        call: Option<usize>,
        error: tokio_postgres::Error,
    },
    Decode(Error),
}

impl Failure {
    /// Whether trying again at once resolves it.
    fn is_immediately_retriable(&self) -> bool {
        let Failure::Statement { error, .. } = self else {
            return false;
        };
        error.code().is_some_and(|code| {
            *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED
        })
    }
}

impl PgEventStore {
    /// Appends `request` alone, in autocommit (one statement, one round
    /// trip on the common path): the path of every command, kept free of
    /// what only units need.
    ///
    /// The statements do not look the command ids up before writing: most
    /// commands are new, and the lookup would cost every append an index
    /// probe. A command that ran already is found when its statement cannot
    /// write the stream row (`refuse_append` answers with the first
    /// outcome), or else when the statement fails on the event ids or on the
    /// command id its last event claims; then its first outcome is looked
    /// up.
    pub(super) async fn append_one(&self, request: &AppendRequest) -> Result<AppendOutcome, Error> {
        let started = Instant::now();
        let call = AppendCall::checked(request, &self.inner.limits, self.notify_channel())?;
        let mut attempts = 1;
        let outcome = loop {
            let failure = match self.attempt_one(&call).await {
                Ok(outcome) => break outcome,
                Err(failure) => failure,
            };
            match self.after(failure, &[&call], &mut attempts, started).await {
                Next::Again => {}
                Next::Found(_, first) => break first,
                Next::Fail(error) => return Err(error),
            }
        };
        self.written(
            started,
            (!outcome.duplicate).then_some(outcome.last_position.commit),
        );
        Ok(outcome)
    }

    /// Appends `requests` in one transaction; outcomes in request order.
    /// As in [`PgEventStore::append_one`], a command that ran already is
    /// found when its statement fails; the unit is then tried again without
    /// it.
    pub(super) async fn append_unit(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendOutcome>, Error> {
        match requests.as_slice() {
            [] => return Ok(Vec::new()),
            [request] => return Ok(vec![self.append_one(request).await?]),
            _ => {}
        }
        let started = Instant::now();
        let calls = Calls::new(&requests, &self.inner.limits, self.notify_channel())?;
        let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; calls.calls.len()];
        let mut attempts = 1;
        loop {
            let pending: Vec<usize> = (0..outcomes.len())
                .filter(|&index| outcomes[index].is_none())
                .collect();
            if pending.is_empty() {
                break;
            }
            let attempted: Vec<&AppendCall<'_>> =
                pending.iter().map(|&index| &calls.calls[index]).collect();
            let failure = match self.attempt_unit(&attempted).await {
                Ok(written) => {
                    for (index, outcome) in pending.into_iter().zip(written) {
                        outcomes[index] = Some(outcome);
                    }
                    break;
                }
                Err(failure) => failure,
            };
            match self
                .after(failure, &attempted, &mut attempts, started)
                .await
            {
                Next::Again => {}
                Next::Found(call, first) => outcomes[pending[call]] = Some(first),
                Next::Fail(error) => return Err(error),
            }
        }
        let outcomes: Vec<AppendOutcome> = outcomes.into_iter().flatten().collect();
        let newest = outcomes
            .iter()
            .filter(|outcome| !outcome.duplicate)
            .map(|outcome| outcome.last_position.commit)
            .max();
        self.written(started, newest);
        Ok(calls.in_request_order(outcomes))
    }

    /// The channel the statements name when they send `NOTIFY` themselves.
    pub(super) fn notify_channel(&self) -> Option<&str> {
        (self.inner.notify == Notify::InTransaction).then(|| self.channel())
    }

    /// What follows a failed attempt of `attempted`: the first outcome of a
    /// command that ran already (the failed call's index and the outcome),
    /// another attempt at once (a concurrent writer changed a stream row
    /// while a statement ran, or a deadlock; nothing was written), or the
    /// error to return (recorded as the outcome of the append that
    /// `started` then).
    async fn after(
        &self,
        failure: Failure,
        attempted: &[&AppendCall<'_>],
        attempts: &mut u32,
        started: Instant,
    ) -> Next {
        if let Failure::Statement {
            call: Some(call), ..
        } = failure
        {
            match self.first_outcome(attempted[call].request).await {
                Ok(Some(first)) => return Next::Found(call, first),
                Ok(None) => {}
                // Whether the command ran is not known (the lookup failed,
                // its connection killed, say): its event ids being stored
                // would otherwise read as a refusal. The caller's retry
                // finds out.
                Err(error) => {
                    record(started, "error");
                    return Next::Fail(error);
                }
            }
        }
        if failure.is_immediately_retriable() && *attempts < MAX_ATTEMPTS {
            *attempts += 1;
            let pause = fastrand::u64(1..=2 * u64::from(*attempts));
            tokio::time::sleep(Duration::from_millis(pause)).await;
            return Next::Again;
        }
        let error = self.refusal(failure, attempted).await;
        let outcome = if error.is_conflict() {
            "conflict"
        } else {
            "error"
        };
        record(started, outcome);
        Next::Fail(error)
    }

    /// After an append or unit that `started` then and committed in
    /// transaction `newest` (`None`: every request was a command that ran
    /// already): wakes readers of the commit, and records the append.
    fn written(&self, started: Instant, newest: Option<u64>) {
        match newest {
            Some(commit) => {
                self.appended(commit);
                record(started, "ok");
            }
            None => record(started, "duplicate"),
        }
    }

    /// One attempt of a lone append: one statement in autocommit, atomic by
    /// itself; only when it wrote nothing (a conflict, or a command that ran
    /// already) does `refuse.sql` follow, to answer or fail.
    async fn attempt_one(&self, call: &AppendCall<'_>) -> Result<AppendOutcome, Failure> {
        let client = self.inner.pool.get().await.map_err(Failure::Pool)?;
        let (step, shape, notifies) = (call.step, call.shape, call.notifies());
        let sql = self
            .inner
            .sql
            .append
            .get(step, shape, Refusal::After, notifies);
        let number = AppendStatements::index(step, shape, Refusal::After, notifies);
        let statement = self
            .inner
            .prepared
            .statement(&client, number, sql, &LEADING_TYPES)
            .await
            .map_err(|error| Failure::Statement { call: None, error })?;
        let row = match client.query_opt(&statement, &call.params()).await {
            Ok(None) => self.refuse(&client, call).await,
            result => result,
        };
        outcome(row, call, 0)
    }

    /// One attempt of a unit: `BEGIN`, the statements and `COMMIT` sent
    /// together: the driver sends each statement when its future is first
    /// polled, and `join_all` polls them in order, so the whole transaction
    /// reaches the server in one round trip; its statements refuse by
    /// failing, so the server refuses the rest and turns `COMMIT` into a
    /// rollback.
    async fn attempt_unit(&self, calls: &[&AppendCall<'_>]) -> Result<Vec<AppendOutcome>, Failure> {
        let client = self.inner.pool.get().await.map_err(Failure::Pool)?;
        let around = |error| Failure::Statement { call: None, error };
        let statements = prepare_calls(&client, calls, &self.inner.sql.append, Refusal::Within)
            .await
            .map_err(around)?;
        let params: Vec<_> = calls.iter().map(|call| call.params()).collect();
        let sent = send_transaction(&client, &paired(&statements, &params))
            .await
            .map_err(around)?;
        sent.begun.map_err(around)?;
        let outcomes = outcomes(sent.statements.into_iter().map(single).collect(), calls)?;
        sent.committed.map_err(around)?;
        Ok(outcomes)
    }

    /// After `call` wrote nothing: the first outcome of its command, or the
    /// error that says why (`refuse_append`, which reads what is committed
    /// now).
    async fn refuse(
        &self,
        client: &deadpool_postgres::Client,
        call: &AppendCall<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let statement = client
            .prepare_typed_cached(&self.inner.sql.append.refuse, &REFUSAL_TYPES)
            .await?;
        client.query_opt(&statement, &call.refusal_params()).await
    }

    /// The first outcome of `request`'s command, if it ran already.
    async fn first_outcome(&self, request: &AppendRequest) -> Result<Option<AppendOutcome>, Error> {
        match request.command_id {
            Some(command_id) => self.outcome_of(command_id).await,
            None => Ok(None),
        }
    }

    /// The contract's error for a failed append.
    pub(super) async fn refusal(&self, failure: Failure, calls: &[&AppendCall<'_>]) -> Error {
        let (call, error) = match failure {
            Failure::Pool(error) => return pool(error),
            Failure::Decode(error) => return error,
            Failure::Statement {
                call: Some(call),
                error,
            } => (calls[call], error),
            Failure::Statement { call: None, error } => return backend(error),
        };
        let Some(db) = error.as_db_error() else {
            return backend(error);
        };
        let request = call.request;
        if db.code().code() == VERSION_CONFLICT {
            let actual = match db.detail() {
                None | Some("") => None,
                Some(version) => match version.parse() {
                    Ok(version) => Some(version),
                    Err(_) => return corrupt(format!("conflict detail {version:?}")),
                },
            };
            return Error::Conflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual,
            };
        }
        if *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some(COMMAND_ID_KEY) {
            // Nothing was written; trying again finds the first outcome.
            return Error::backend("postgres", true, error);
        }
        if *db.code() == SqlState::UNIQUE_VIOLATION && db.constraint() == Some(EVENT_ID_KEY) {
            let event_ids: Vec<Uuid> = request.events.iter().map(|event| event.event_id).collect();
            let reason = match self.stored_event_id(&event_ids).await {
                Ok(Some(event_id)) => format!("event id {event_id} is already stored"),
                _ => "one of its event ids is already stored".to_owned(),
            };
            return Error::InvalidAppend {
                stream: request.stream.clone(),
                reason,
            };
        }
        backend(error)
    }

    /// Which of `event_ids` is stored, to name it in the error.
    async fn stored_event_id(&self, event_ids: &[Uuid]) -> Result<Option<Uuid>, Error> {
        let client = self.inner.pool.get().await.map_err(pool)?;
        let statement = client
            .prepare_cached(&self.inner.sql.stored_event_id)
            .await
            .map_err(backend)?;
        let row = client
            .query_opt(&statement, &[&event_ids])
            .await
            .map_err(backend)?;
        row.map(|row| row.try_get(0).map_err(backend)).transpose()
    }
}

/// The answers to a transaction sent whole.
pub(super) struct SentTransaction {
    pub(super) begun: Result<Vec<Row>, tokio_postgres::Error>,
    /// One per statement, in order.
    pub(super) statements: Vec<Result<Vec<Row>, tokio_postgres::Error>>,
    /// A failed statement turns `COMMIT` into a rollback without an error:
    /// the statements' answers say whether the transaction was written.
    pub(super) committed: Result<Vec<Row>, tokio_postgres::Error>,
}

/// The statement of each call, refusing as `refusal` says, prepared on
/// `client`.
pub(super) async fn prepare_calls(
    client: &deadpool_postgres::Client,
    calls: &[&AppendCall<'_>],
    statements: &AppendStatements,
    refusal: Refusal,
) -> Result<Vec<Statement>, tokio_postgres::Error> {
    let mut prepared = Vec::with_capacity(calls.len());
    for call in calls {
        prepared.push(prepare_call(client, call, statements, refusal).await?);
    }
    Ok(prepared)
}

/// The statement of `call`, refusing as `refusal` says, prepared on
/// `client`.
pub(super) async fn prepare_call(
    client: &deadpool_postgres::Client,
    call: &AppendCall<'_>,
    statements: &AppendStatements,
    refusal: Refusal,
) -> Result<Statement, tokio_postgres::Error> {
    let sql = statements.get(call.step, call.shape, refusal, call.notifies());
    client.prepare_typed_cached(sql, &LEADING_TYPES).await
}

/// Each statement with its parameters.
pub(super) fn paired<'a>(
    statements: &'a [Statement],
    params: &'a [Vec<&'a (dyn ToSql + Sync)>],
) -> Vec<(&'a Statement, &'a [&'a (dyn ToSql + Sync)])> {
    statements
        .iter()
        .zip(params)
        .map(|(statement, params)| (statement, &params[..]))
        .collect()
}

/// Sends `BEGIN`, `statements` and `COMMIT` together, in one round trip
/// (see [`send_in_order`]); fails only when `BEGIN` or `COMMIT` cannot be
/// prepared.
pub(super) async fn send_transaction(
    client: &deadpool_postgres::Client,
    statements: &[(&Statement, &[&(dyn ToSql + Sync)])],
) -> Result<SentTransaction, tokio_postgres::Error> {
    let begin = client.prepare_cached("BEGIN").await?;
    let commit = client.prepare_cached("COMMIT").await?;
    let client: &tokio_postgres::Client = client;
    let mut sent: Vec<(&Statement, &[&(dyn ToSql + Sync)])> = vec![(&begin, &[])];
    sent.extend_from_slice(statements);
    sent.push((&commit, &[]));
    let mut results = send_in_order(client, &sent).await;
    let committed = results.pop().expect("COMMIT was sent");
    let begun = results.remove(0);
    Ok(SentTransaction {
        begun,
        statements: results,
        committed,
    })
}

/// Sends every statement before awaiting any answer: the driver sends each
/// statement when its future is first polled, and `join_all` polls them in
/// order, so that they reach the server in one round trip. Answers in the
/// same order.
pub(super) async fn send_in_order<C: GenericClient + Sync>(
    client: &C,
    statements: &[(&Statement, &[&(dyn ToSql + Sync)])],
) -> Vec<Result<Vec<Row>, tokio_postgres::Error>> {
    join_all(
        statements
            .iter()
            .map(|(statement, params)| client.query(*statement, params)),
    )
    .await
}

/// The answer of a statement that answers at most one row.
pub(super) fn single(
    result: Result<Vec<Row>, tokio_postgres::Error>,
) -> Result<Option<Row>, tokio_postgres::Error> {
    result.map(|rows| rows.into_iter().next())
}

/// The outcomes of the calls, or the first call's failure.
pub(super) fn outcomes(
    results: Vec<Result<Option<Row>, tokio_postgres::Error>>,
    calls: &[&AppendCall<'_>],
) -> Result<Vec<AppendOutcome>, Failure> {
    results
        .into_iter()
        .zip(calls)
        .enumerate()
        .map(|(index, (result, call))| outcome(result, call, index))
        .collect()
}

/// The outcome of `call`, the call at `index` of those attempted.
fn outcome(
    result: Result<Option<Row>, tokio_postgres::Error>,
    call: &AppendCall<'_>,
    index: usize,
) -> Result<AppendOutcome, Failure> {
    let row = result.map_err(|error| Failure::Statement {
        call: Some(index),
        error,
    })?;
    let row = row.ok_or_else(|| Failure::Decode(corrupt("the append returned no row")))?;
    rows::append_outcome(&row, &call.request.stream, call.written_version())
        .map_err(Failure::Decode)
}

pub(super) fn record(started: Instant, outcome: &'static str) {
    metrics::counter!("annals_appends_total", "backend" => "postgres", "outcome" => outcome)
        .increment(1);
    metrics::histogram!("annals_append_duration_seconds", "backend" => "postgres")
        .record(started.elapsed().as_secs_f64());
}
