//! The sink's errors, in the engine's classes (see `tributary_engine::error`):
//! - a [`RecordError`] is one clean record that cannot become a row of its table: it goes to
//!   `dlq.sink` with its text as the reason, and the partition goes on;
//! - an [`Error`] is a failure of the sink or of what it depends on: [`Error::is_transient`]
//!   ones (the registry or the lake not answering) are waited out and retried, never turned
//!   into dead letters; the others are fatal: the sink stops, and its restart resumes from the
//!   tables' offsets.
//!
//! Both are matched on their variants, never on their text.

use crate::decode::{ColumnError, DecodeError, SchemaError};

/// The `error.class` header of every record the sink dead-letters.
pub const DEAD_LETTER_CLASS: &str = "unconvertible";

/// Why one clean record cannot be written to its table.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("tombstone: no value")]
    Tombstone,
    #[error("not in the Confluent wire format")]
    NotWireFormat,
    /// The registry answered that it holds no schema under the record's id, or the schema it
    /// holds is not one the sink can read.
    #[error("schema {id}: {source}")]
    WriterSchema {
        id: u32,
        #[source]
        source: Box<WriterSchemaError>,
    },
    /// The body does not decode with its writer schema.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A value that fits no column of the table (the reason is `convert::unfit`'s or
    /// `convert::NO_EVENT_TIME`, as the old `convert::check_row` gave).
    #[error("{0}")]
    Unfit(String),
    /// The decoded row does not go into the table's column builders.
    #[error("{0}")]
    Column(#[from] arrow::error::ArrowError),
}

/// Why a writer schema cannot be used (a definite answer, not an outage).
#[derive(Debug, thiserror::Error)]
pub enum WriterSchemaError {
    /// The registry refused: an id it does not hold.
    #[error("{0}")]
    Registry(#[source] tributary_lake::Error),
    /// Apache Avro rejects the schema.
    #[error("{0}")]
    Avro(#[from] apache_avro::Error),
    /// No Arrow schema for it.
    #[error("{0}")]
    Arrow(#[source] tributary_lake::Error),
    /// The decoder cannot compile it.
    #[error("{0}")]
    Decoder(#[from] SchemaError),
    /// Not fetched before its record came to be decoded (the loop fetches every new id first).
    #[error("not loaded from the registry")]
    NotLoaded,
}

/// What fetching a writer schema can end in.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The registry did not answer (no connection, a 502/503): wait and ask again.
    #[error("schema {id}: {source}")]
    Unavailable {
        id: u32,
        #[source]
        source: Box<tributary_lake::Error>,
    },
    /// A definite answer: the records written with this id are dead letters.
    #[error(transparent)]
    Unusable(RecordError),
}

/// Failures of the sink itself or of what it depends on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The lake failed: open, reload, widen or commit (a commit is retried until it lands
    /// unless the caller commits once, at a revocation).
    #[error("lake: {context}: {source}")]
    Lake {
        context: String,
        #[source]
        source: Box<tributary_lake::Error>,
    },
    /// A table column the decoder cannot build.
    #[error("table {chain}: {source}")]
    Table {
        chain: String,
        #[source]
        source: ColumnError,
    },
    /// The waiting rows do not make a batch of the table's schema.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// A chain the lake has no schema for.
    #[error("unknown chain '{0}'")]
    UnknownChain(String),
    /// An invariant of the sink broke (a record of a topic it does not read, a partition
    /// assigned again while its rows wait): it stops and restarts from the tables.
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// Whether waiting and retrying can clear it (the lake or the registry not answering).
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Lake { source, .. } => lake_transient(source),
            Error::Kafka { .. }
            | Error::Table { .. }
            | Error::Arrow(_)
            | Error::UnknownChain(_)
            | Error::Internal(_)
            | Error::Io(_) => false,
        }
    }
}

/// The lake's errors that waiting can clear: the store or Delta's log not answering, another
/// writer's commit. Bad schemas, data or addresses are not.
fn lake_transient(e: &tributary_lake::Error) -> bool {
    use tributary_lake::Error as E;
    match e {
        E::Delta(_) | E::Store { .. } | E::Unavailable(_) | E::Conflict(_) => true,
        E::Arrow(_) | E::Schema(_) | E::Record(_) | E::Uri(..) | E::Parquet(_) => false,
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Names what the sink was doing when Kafka or the lake failed.
pub(crate) trait Context<T> {
    fn ctx(self, context: &'static str) -> Result<T>;
}

impl<T, E: Into<Doing>> Context<T> for std::result::Result<T, E> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|e| e.into().error(context))
    }
}

/// A failure of Kafka or of the lake, before it is told what the sink was doing.
pub(crate) enum Doing {
    Kafka(rdkafka::error::KafkaError),
    Lake(tributary_lake::Error),
}

impl Doing {
    fn error(self, context: &'static str) -> Error {
        match self {
            Doing::Kafka(source) => Error::Kafka { context, source },
            Doing::Lake(source) => Error::Lake {
                context: context.to_owned(),
                source: Box::new(source),
            },
        }
    }
}

impl From<rdkafka::error::KafkaError> for Doing {
    fn from(e: rdkafka::error::KafkaError) -> Doing {
        Doing::Kafka(e)
    }
}

impl From<tributary_lake::Error> for Doing {
    fn from(e: tributary_lake::Error) -> Doing {
        Doing::Lake(e)
    }
}

impl From<deltalake::DeltaTableError> for Doing {
    fn from(e: deltalake::DeltaTableError) -> Doing {
        Doing::Lake(e.into())
    }
}
