//! Errors of the engine, classified the way the service must react to them:
//! a [`RecordError`] is bad data and goes to the DLQ; an [`Error`] is an external or internal
//! failure that the loop retries (transaction aborts) or that stops the service loudly.

use std::fmt;

/// The classes of bad data. Bounded: each is a metric label value and a DLQ header value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorClass {
    /// The record is larger than `max_record_bytes`; it was not parsed.
    Oversize,
    /// The `source` header names no format this chain reads.
    UnknownSource,
    /// The payload is not well-formed in its source format.
    Malformed,
    /// No tenant, or a tenant id that breaks the pattern.
    InvalidTenant,
    /// A well-formed tenant id this deployment does not serve.
    UnknownTenant,
    /// A field the chain requires is absent or empty.
    MissingField,
    /// An email address that does not parse.
    InvalidEmail,
    /// A timestamp that does not parse, or lies before 2000 or more than a day ahead.
    InvalidTimestamp,
    /// A value outside its closed set or otherwise unusable.
    InvalidValue,
}

impl ErrorClass {
    pub const ALL: [ErrorClass; 9] = [
        ErrorClass::Oversize,
        ErrorClass::UnknownSource,
        ErrorClass::Malformed,
        ErrorClass::InvalidTenant,
        ErrorClass::UnknownTenant,
        ErrorClass::MissingField,
        ErrorClass::InvalidEmail,
        ErrorClass::InvalidTimestamp,
        ErrorClass::InvalidValue,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Oversize => "oversize",
            ErrorClass::UnknownSource => "unknown_source",
            ErrorClass::Malformed => "malformed",
            ErrorClass::InvalidTenant => "invalid_tenant",
            ErrorClass::UnknownTenant => "unknown_tenant",
            ErrorClass::MissingField => "missing_field",
            ErrorClass::InvalidEmail => "invalid_email",
            ErrorClass::InvalidTimestamp => "invalid_timestamp",
            ErrorClass::InvalidValue => "invalid_value",
        }
    }

    pub fn parse(s: &str) -> Option<ErrorClass> {
        ErrorClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why one record cannot become clean. It goes to the DLQ with these two facts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {reason}")]
pub struct RecordError {
    pub class: ErrorClass,
    pub reason: String,
}

impl RecordError {
    pub fn new(class: ErrorClass, reason: impl Into<String>) -> Self {
        RecordError {
            class,
            reason: reason.into(),
        }
    }
    pub fn missing(field: &str) -> Self {
        RecordError::new(
            ErrorClass::MissingField,
            format!("required field '{field}' is missing or empty"),
        )
    }
    pub fn invalid(field: &str, why: impl fmt::Display) -> Self {
        RecordError::new(ErrorClass::InvalidValue, format!("field '{field}': {why}"))
    }
    pub fn malformed(why: impl fmt::Display) -> Self {
        RecordError::new(ErrorClass::Malformed, why.to_string())
    }
}

/// Failures of the service itself: configuration, Kafka, the registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: &'static str,
        #[source]
        source: rdkafka::error::KafkaError,
    },
    #[error("schema registry: {0}")]
    Registry(String),
    /// Another instance with our transactional id took over: this instance must stop.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The group took this instance's partitions (its session lapsed) and, with the broker
    /// answering, gave none back: a restart rejoins cleanly.
    #[error("group membership lost: {0}")]
    MembershipLost(String),
    #[error("state restore of {topic}[{partition}]: {reason}")]
    Restore {
        topic: String,
        partition: i32,
        reason: String,
    },
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait KafkaContext<T> {
    fn ctx(self, context: &'static str) -> Result<T>;
}

impl<T> KafkaContext<T> for std::result::Result<T, rdkafka::error::KafkaError> {
    fn ctx(self, context: &'static str) -> Result<T> {
        self.map_err(|source| Error::Kafka { context, source })
    }
}
