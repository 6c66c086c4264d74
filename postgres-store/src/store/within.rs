//! Appending inside a transaction of the caller's.

use annals::{AppendOutcome, AppendRequest, Error, EventStore};

use super::PgEventStore;
use super::append::{outcomes, paired, send_in_order, single};
use super::call::{AppendCall, Calls};
use crate::Notify;
use crate::error::backend;
use crate::statements::{LEADING_TYPES, Refusal};

impl PgEventStore {
    /// Appends `requests` inside `transaction`, which the caller commits or
    /// rolls back: the events, snapshots and outbox messages then commit
    /// together with whatever else the transaction writes (a read model and
    /// its checkpoint, an inbox row, saga state).
    ///
    /// The same checks and errors as [`EventStore::append_all`] apply, with
    /// these differences: requests whose command id ran already are answered
    /// from the record before anything is sent (one more round trip when any
    /// request has a command id); a failure that a plain append retries by
    /// itself (the stream row changed while the statement ran, a command-id
    /// race) is returned as a retriable error, since only the caller can run
    /// its transaction again; and after any error the transaction is aborted
    /// and must be rolled back. Unless [`Notify::Off`], the wake-up is sent by
    /// the transaction itself, at its commit.
    ///
    /// The transaction holds the readers' horizon until it ends: keep it
    /// short.
    ///
    /// [`EventStore::append_all`]: annals::EventStore::append_all
    ///
    /// ```no_run
    /// # use annals::{AppendRequest, ExpectedVersion, Metadata, NewEvent, Payload, StreamId};
    /// # async fn run(store: annals_postgres::PgEventStore) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut client = store.pool().get().await?;
    /// let transaction = client.transaction().await?;
    /// let event = NewEvent::raw("PaymentCaptured", 1, Payload::encode(&1250)?, Metadata::default());
    /// let request = AppendRequest::new(StreamId::new("payment-7")?, ExpectedVersion::Any).event(event);
    /// store.append_in(&transaction, vec![request]).await?;
    /// transaction.execute("UPDATE payments_view SET captured = true WHERE id = 7", &[]).await?;
    /// transaction.commit().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn append_in(
        &self,
        transaction: &deadpool_postgres::Transaction<'_>,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<AppendOutcome>, Error> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let channel = (self.inner.db.notify != Notify::Off).then(|| self.channel());
        let calls = Calls::new(&requests, &self.inner.db.limits, channel)?;
        let mut outcomes_by_call = Vec::with_capacity(calls.calls.len());
        for call in &calls.calls {
            outcomes_by_call.push(match call.request.command_id {
                Some(command_id) => self.command_outcome(command_id).await?,
                None => None,
            });
        }
        let pending: Vec<&AppendCall<'_>> = calls
            .calls
            .iter()
            .zip(&outcomes_by_call)
            .filter(|(_, first)| first.is_none())
            .map(|(call, _)| call)
            .collect();
        let mut statements = Vec::with_capacity(pending.len());
        for call in &pending {
            let (sql, _) = call.statement(&self.inner.db.sql.append, Refusal::InStatement);
            statements.push(
                transaction
                    .prepare_typed_cached(sql, &LEADING_TYPES)
                    .await
                    .map_err(backend)?,
            );
        }
        let params: Vec<_> = pending.iter().map(|call| call.params()).collect();
        let transaction: &tokio_postgres::Transaction<'_> = transaction;
        let results = send_in_order(transaction, &paired(&statements, &params))
            .await
            .into_iter()
            .map(single)
            .collect();
        let mut written = match outcomes(results, &pending) {
            Ok(written) => written.into_iter(),
            Err(failure) => return Err(self.refusal(failure, &pending).await),
        };
        let outcomes = outcomes_by_call
            .into_iter()
            .map(|first| first.or_else(|| written.next()))
            .collect::<Option<Vec<_>>>()
            .expect("one outcome per call");
        Ok(calls.in_request_order(outcomes))
    }
}
