//! What comes with a command and what comes back.

use uuid::Uuid;

use crate::{Error, GlobalPosition, Metadata, StreamId};

/// The id and metadata of one command.
///
/// The command id makes the command idempotent: executing it again returns
/// the first outcome and appends nothing. Give a stable id (e.g. from the
/// HTTP request's idempotency key) when a client may resend; otherwise a new
/// UUID v7 is used.
///
/// ```
/// use annals::CommandContext;
/// use uuid::Uuid;
///
/// let key = Uuid::now_v7();
/// let context = CommandContext::new()
///     .with_command_id(key)
///     .with_user("alice")
///     .with_header("source", "web");
/// assert_eq!(context.command_id, key);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandContext {
    /// The command's id.
    pub command_id: Uuid,
    /// Correlation and causation ids, tenant, user, trace context, headers;
    /// copied to every event the command produces.
    pub metadata: Metadata,
}

impl Default for CommandContext {
    fn default() -> Self {
        CommandContext {
            command_id: Uuid::now_v7(),
            metadata: Metadata::default(),
        }
    }
}

impl CommandContext {
    /// A new command id and empty metadata.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the command id.
    pub fn with_command_id(mut self, command_id: Uuid) -> Self {
        self.command_id = command_id;
        self
    }

    /// Sets the correlation id (by default the command id).
    pub fn with_correlation_id(mut self, correlation_id: Uuid) -> Self {
        self.metadata.correlation_id = Some(correlation_id);
        self
    }

    /// Sets the causation id (by default the command id).
    pub fn with_causation_id(mut self, causation_id: Uuid) -> Self {
        self.metadata.causation_id = Some(causation_id);
        self
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.metadata.tenant = Some(tenant.into());
        self
    }

    /// Sets the user.
    pub fn with_user(mut self, user: impl Into<String>) -> Self {
        self.metadata.user = Some(user.into());
        self
    }

    /// Sets the W3C trace context.
    pub fn with_traceparent(mut self, traceparent: impl Into<String>) -> Self {
        self.metadata.traceparent = Some(traceparent.into());
        self
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.headers.insert(name.into(), value.into());
        self
    }

    /// The metadata of the events this command produces.
    pub(crate) fn event_metadata(&self) -> Metadata {
        let mut metadata = self.metadata.clone();
        metadata.command_id = Some(self.command_id);
        metadata.correlation_id.get_or_insert(self.command_id);
        metadata.causation_id.get_or_insert(self.command_id);
        metadata
    }
}

/// What an executed command did.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutcome<E> {
    /// The aggregate's stream.
    pub stream: StreamId,
    /// The stream's version after the command.
    pub version: u64,
    /// The events the command produced (empty when it changed nothing).
    pub events: Vec<E>,
    /// The global position of the last event, `None` when nothing was
    /// appended.
    pub position: Option<GlobalPosition>,
    /// True when the command id had been executed before: `events` are what
    /// that first execution produced and nothing was appended now.
    pub duplicate: bool,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E> {
    /// The aggregate refused the command: a business rule, not a fault.
    #[error("command rejected: {0}")]
    Rejected(#[source] E),
    /// The store failed, or conflicts outlasted the retry policy.
    #[error(transparent)]
    Store(#[from] Error),
}

impl<E> CommandError<E> {
    /// The domain error, when the aggregate refused the command.
    pub fn rejection(&self) -> Option<&E> {
        match self {
            CommandError::Rejected(error) => Some(error),
            CommandError::Store(_) => None,
        }
    }

    /// True when conflicts outlasted the retry policy.
    pub fn is_conflict(&self) -> bool {
        matches!(self, CommandError::Store(error) if error.is_conflict())
    }
}
