//! A file table whose `path` is `s3://bucket/key`. A HEAD says whether the object is the one the
//! table's version came from (its ETag, time of change and size, not its content: that would
//! mean reading it); a changed object is streamed to a file under `<data_dir>/.objects/`, never
//! held whole in memory, and read there by the same readers as a local file, then removed.
//! Messages name the URL, not the download.

use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use object_store::{GetOptions, ObjectMeta, ObjectStore};
use tokio::io::AsyncWriteExt;

use super::{FileTableConfig, load_table, settings_hash, streamed_batches};
use crate::connectors::{ConnectorError, LoadState, Loaded, RejectedRecord, StreamedTable};
use crate::objects::{ObjectSources, ObjectUrl, answered, explain};

/// A table's load from object storage: nothing read if the object is unchanged.
pub(super) async fn load_unless_unchanged(
    table: &FileTableConfig,
    url: &ObjectUrl,
    objects: &ObjectSources,
    state: &LoadState,
) -> Result<Loaded, ConnectorError> {
    let object = Object::open(table, url, objects)?;
    let meta = object.head().await?;
    let fingerprint = fingerprint(table, &meta);
    if state.unchanged(&table.name, &fingerprint) {
        return Ok(Loaded::Unchanged);
    }
    let download = object.download(&meta, &objects.scratch).await?;
    let local = download.path.clone();
    if let Some(batches) = streamed_batches(table, &local) {
        let (schema, batches) = batches.await.map_err(|e| download.renamed(e))?;
        // The download is removed when the store has read the last batch (or given up).
        let batches = batches
            .map(move |read| -> Result<_, ConnectorError> {
                let (batch, rejected) = read.map_err(|e| download.renamed(e))?;
                Ok((batch, download.renamed_rejected(rejected)))
            })
            .map_err(Into::into)
            .boxed();
        return Ok(Loaded::Streamed(StreamedTable {
            schema,
            batches,
            fingerprint: Some(fingerprint),
        }));
    }
    let mut loaded = load_table(table.clone(), local)
        .await
        .map_err(|e| download.renamed(e))?;
    loaded.rejected = download.renamed_rejected(std::mem::take(&mut loaded.rejected));
    loaded.fingerprint = Some(fingerprint);
    Ok(loaded.into())
}

/// A table's schema as a load would make it (`cruscotto check`): the object is downloaded to
/// `objects.scratch` and described like a local file.
pub(super) async fn describe(
    table: &FileTableConfig,
    url: &ObjectUrl,
    objects: &ObjectSources,
) -> Result<(arrow::datatypes::SchemaRef, Vec<RejectedRecord>), ConnectorError> {
    let object = Object::open(table, url, objects)?;
    let meta = object.head().await?;
    let download = object.download(&meta, &objects.scratch).await?;
    let (schema, rejected) = super::describe_local(table, download.path.clone())
        .await
        .map_err(|e| download.renamed(e))?;
    Ok((schema, download.renamed_rejected(rejected)))
}

/// What identifies an object as read: what a HEAD says of it (ETag, time of change, size), the
/// table's settings and the release reading it.
fn fingerprint(table: &FileTableConfig, meta: &ObjectMeta) -> String {
    format!(
        "object etag {}, version {}, {} bytes, modified {}, settings {:016x}, cruscotto {}",
        meta.e_tag.as_deref().unwrap_or("-"),
        meta.version.as_deref().unwrap_or("-"),
        meta.size,
        meta.last_modified.to_rfc3339(),
        settings_hash(table),
        env!("CARGO_PKG_VERSION")
    )
}

/// One table's object and the client that reaches it.
struct Object<'a> {
    table: &'a FileTableConfig,
    url: &'a ObjectUrl,
    store: std::sync::Arc<dyn ObjectStore>,
    server: String,
}

impl<'a> Object<'a> {
    fn open(
        table: &'a FileTableConfig,
        url: &'a ObjectUrl,
        objects: &ObjectSources,
    ) -> Result<Self, ConnectorError> {
        let store = objects
            .config
            .open(url)
            .map_err(|message| failure(table, url, message))?;
        Ok(Self {
            table,
            url,
            store,
            server: objects.config.server(),
        })
    }

    fn fail(&self, message: impl Into<String>) -> ConnectorError {
        failure(self.table, self.url, message.into())
    }

    async fn head(&self) -> Result<ObjectMeta, ConnectorError> {
        let head = GetOptions {
            head: true,
            ..Default::default()
        };
        match self.store.get_opts(&self.url.key, head).await {
            Ok(found) => Ok(found.meta),
            Err(error) => {
                // A HEAD's answer has no body: a GET's says which of bucket or key is missing,
                // and why access was refused.
                let detail = if answered(&error) {
                    let probe = GetOptions {
                        range: Some((0..1).into()),
                        ..Default::default()
                    };
                    self.store.get_opts(&self.url.key, probe).await.err()
                } else {
                    None
                };
                Err(self.fail(explain(&error, self.url, &self.server, detail.as_ref())))
            }
        }
    }

    /// The object as `meta` describes it (a GET on its ETag: an object replaced since the HEAD
    /// fails this load rather than be read under the old one's fingerprint), streamed to a file.
    async fn download(
        &self,
        meta: &ObjectMeta,
        scratch: &Path,
    ) -> Result<Download, ConnectorError> {
        tokio::fs::create_dir_all(scratch)
            .await
            .map_err(|e| self.fail(format!("cannot make `{}`: {e}", scratch.display())))?;
        let extension = self.url.key.extension().unwrap_or("download");
        let download = Download {
            path: scratch.join(format!(
                "{}-{}.{extension}",
                self.table.name,
                uuid::Uuid::new_v4().simple()
            )),
            url: self.url.to_string(),
        };
        let options = GetOptions {
            if_match: meta.e_tag.clone(),
            ..Default::default()
        };
        let got = match self.store.get_opts(&self.url.key, options).await {
            Ok(got) => got,
            Err(object_store::Error::Precondition { .. }) => {
                return Err(self.fail(
                    "the object was replaced while it was being read; the next refresh reads \
                     the new one",
                ));
            }
            Err(error) => return Err(self.fail(explain(&error, self.url, &self.server, None))),
        };
        let mut file = tokio::fs::File::create(&download.path)
            .await
            .map_err(|e| self.fail(format!("cannot write `{}`: {e}", download.path.display())))?;
        let mut chunks = got.into_stream();
        let mut written = 0u64;
        while let Some(chunk) = chunks.try_next().await.map_err(|e| {
            self.fail(format!(
                "the download broke off after {written} bytes: {}",
                explain(&e, self.url, &self.server, None)
            ))
        })? {
            file.write_all(&chunk).await.map_err(|e| {
                self.fail(format!("cannot write `{}`: {e}", download.path.display()))
            })?;
            written += chunk.len() as u64;
        }
        file.flush()
            .await
            .map_err(|e| self.fail(format!("cannot write `{}`: {e}", download.path.display())))?;
        if written != meta.size {
            return Err(self.fail(format!(
                "the download ended after {written} of {} bytes",
                meta.size
            )));
        }
        tracing::debug!(table = %self.table.name, url = %self.url, bytes = written, "object downloaded");
        Ok(download)
    }
}

fn failure(table: &FileTableConfig, url: &ObjectUrl, message: String) -> ConnectorError {
    ConnectorError::Object {
        table: table.name.clone(),
        url: url.to_string(),
        message,
    }
}

/// A downloaded object, removed when dropped. The readers name the file they read; what they say
/// is said of the URL instead.
struct Download {
    path: PathBuf,
    url: String,
}

impl Drop for Download {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a download");
        }
    }
}

impl Download {
    fn renamed_text(&self, text: &str) -> String {
        text.replace(&self.path.display().to_string(), &self.url)
    }

    fn renamed_path(&self, path: PathBuf) -> PathBuf {
        PathBuf::from(self.renamed_text(&path.display().to_string()))
    }

    /// A reader's error about the download, said of the URL.
    fn renamed(&self, error: ConnectorError) -> ConnectorError {
        match error {
            ConnectorError::Read { path, source } => ConnectorError::Read {
                path: self.renamed_path(path),
                source,
            },
            ConnectorError::Parse { path, message } => ConnectorError::Parse {
                path: self.renamed_path(path),
                message: self.renamed_text(&message),
            },
            ConnectorError::Column {
                path,
                column,
                message,
            } => ConnectorError::Column {
                path: self.renamed_path(path),
                column,
                message: self.renamed_text(&message),
            },
            ConnectorError::Transform { path, message } => ConnectorError::Transform {
                path: self.renamed_path(path),
                message: self.renamed_text(&message),
            },
            other => other,
        }
    }

    fn renamed_rejected(&self, rejected: Vec<RejectedRecord>) -> Vec<RejectedRecord> {
        rejected
            .into_iter()
            .map(|record| RejectedRecord {
                source: self.renamed_text(&record.source),
                reason: self.renamed_text(&record.reason),
                ..record
            })
            .collect()
    }
}
