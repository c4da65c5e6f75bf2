//! The Tributary lake: one Delta table per chain at `<lake root>/<chain>`, partitioned by
//! `tenant_id` and `event_date`, on HDFS (`hdfs://`) or a local directory.
//!
//! Invariant: every commit that adds data also records, as Delta `txn` actions in the same
//! atomic commit, the next Kafka offset to read for each topic-partition it covers (app id
//! `<topic>-<partition>`). A writer resumes from those versions, never from Kafka's own
//! committed offsets, so a crash at any point neither loses nor doubles rows; two writers
//! committing the same app id concurrently conflict and the loser retries from the table.

pub mod compact;
pub mod convert;
pub mod erase;
pub mod reconcile;
pub mod table;

pub use deltalake::DeltaTable;
pub use table::{CommitSummary, Lake};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("delta: {0}")]
    Delta(#[from] deltalake::DeltaTableError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("schema: {0}")]
    Schema(String),
    #[error("record: {0}")]
    Record(String),
    /// Reading or writing a file through the object store failed (a namenode down, a file
    /// gone): the store's failure, never the data's.
    #[error("object store: {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: object_store::Error,
    },
    /// A data file that does not decode as Parquet.
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("lake uri '{0}': {1}")]
    Uri(String, String),
    /// Another writer committed the same topic-partitions first: our batch must be dropped
    /// and the partitions re-read from the offsets the table now holds.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A dependency did not answer (the registry down, a connection refused, a 502/503): the
    /// caller waits and retries; it never turns the record at hand into a dead letter.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The schema text a Confluent-compatible registry holds under `id`: the writer schema of
/// clean records framed with that id (the sink and reconciliation decode with it).
pub async fn registry_schema(registry_url: &str, id: u32) -> Result<String> {
    use schema_registry_converter::async_impl::schema_registry::{get_schema_by_id, SrSettings};
    let sr = SrSettings::new(registry_url.trim_end_matches('/').to_owned());
    get_schema_by_id(id, &sr).await.map(|s| s.schema).map_err(|e| {
        let msg = format!("registry schema id {id}: {e}");
        // The client marks what is worth retrying: no connection, 502, 503.
        if e.retriable {
            Error::Unavailable(msg)
        } else {
            Error::Schema(msg)
        }
    })
}

/// The one runtime a process's lake reads and writes share, where several threads of it
/// touch an HDFS lake. hdfs-native keeps DataNode connections in a process-wide cache
/// (`DATANODE_CACHE`, 3 s): a connection made on one runtime and taken from the cache by
/// another waits on a reactor that nobody drives (a current-thread runtime drives its IO only
/// inside its own `block_on`), or fails once its runtime is gone ("A Tokio 1.x context was
/// found, but it is being shutdown"). `make chaos` hung there for good (five threads, each with
/// a current-thread runtime of its own, reading an HDFS lake). A multi-thread runtime drives
/// its reactor on its workers whoever waits; `block_on` may be called from any thread that is
/// not itself inside a runtime.
pub fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lake-io")
            .enable_all()
            .build()
            .expect("starting the lake runtime")
    })
}

/// The unified Avro schema of a chain (`schemas/<chain>.avsc`, from the chain registry).
pub fn chain_schema(chain: &str) -> Option<&'static str> {
    tributary_engine::chains::get(chain).map(|c| c.schema)
}

/// Registers the `hdfs://` object store once per process.
pub fn register_storage() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| deltalake::hdfs::register_handlers(None));
}

/// The table at `url` loaded, or None when its `_delta_log` holds no commit yet. The log is
/// listed first: loading a location with no commit makes the kernel log an ERROR ("No files in
/// log segment") before deltalake turns it into "not a table", which every new table's first
/// open printed, alarming in a sink's log for what is the normal start of a lake.
pub async fn load_if_table(url: &url::Url) -> Result<Option<deltalake::DeltaTable>> {
    use deltalake::logstore::LogStore as _;
    let mut table = deltalake::DeltaTableBuilder::from_url(url.clone())?.build()?;
    if !table.log_store().is_delta_table_location().await? {
        return Ok(None);
    }
    match table.load().await {
        Ok(()) if table.version().is_some() => Ok(Some(table)),
        Ok(()) | Err(deltalake::DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Opens a chain's table if it exists (None when nothing was ever written there).
pub async fn open_existing(lake: &Lake, chain: &str) -> Result<Option<deltalake::DeltaTable>> {
    let url = lake.table_url(chain)?;
    let local_and_absent = |url: &url::Url| url.scheme() == "file" && url.to_file_path().is_ok_and(|p| !p.exists());
    if local_and_absent(&url) {
        return Ok(None);
    }
    // An absent HDFS directory lists as no log. A local directory removed
    // since the check above fails in the kernel (`InvalidTableLocation`, a kernel error type
    // deltalake does not re-export): that case is recognised by checking again, not by text.
    match load_if_table(&url).await {
        Err(_) if local_and_absent(&url) => Ok(None),
        other => other,
    }
}
