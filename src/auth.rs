//! API keys, roles and dataset scopes. A key is `ck_<id>_<secret>`: the id finds the record, the
//! secret is checked against its argon2 hash. Keys live in `<data_dir>/keys.json`, re-read when
//! the file changes, so a key revoked from the command line fails at the next request. The file
//! holds no secret, only argon2 hashes, and is still readable by its owner only (0600).

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads published datasets within its scope; small counts are suppressed.
    Partner,
    /// Runs read-only SQL over every table; sees raw aggregates.
    Analyst,
    /// Everything an analyst does, plus the audit log.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Partner => "partner",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }
}

/// Who is calling, once the key is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The key id, or `anonymous`.
    pub key_id: String,
    pub role: Role,
    /// For partners, the datasets the key may read; empty for other roles (they read all).
    pub datasets: BTreeSet<String>,
}

impl Principal {
    pub fn may_read_dataset(&self, name: &str) -> bool {
        self.role != Role::Partner || self.datasets.contains(name)
    }

    pub fn is_at_least(&self, role: Role) -> bool {
        self.role >= role
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub datasets: BTreeSet<String>,
    /// argon2id PHC string of the secret.
    pub hash: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuthError {
    #[error("the API key is malformed; expected `ck_<id>_<secret>`")]
    Malformed,
    #[error("unknown API key")]
    Unknown,
    #[error("this API key was revoked")]
    Revoked,
    #[error("cannot read the key file {path}: {message}")]
    Store { path: String, message: String },
}

/// What the cheap checks of a key found.
#[derive(Debug, PartialEq)]
pub enum Lookup {
    /// This secret was verified before: no hashing needed.
    Verified(Principal),
    /// The key's id exists and is not revoked; only argon2 can tell whether the secret is right.
    NeedsHashing,
}

/// The keys file, cached in memory and re-read when it changes on disk.
pub struct KeyStore {
    path: PathBuf,
    cache: RwLock<Cache>,
}

#[derive(Default)]
struct Cache {
    modified: Option<(SystemTime, u64)>,
    keys: HashMap<String, KeyRecord>,
    /// SHA-256 of secrets already verified with argon2, so each request does not pay argon2's cost.
    verified: HashMap<String, [u8; 32]>,
}

fn store_error(path: &Path, e: impl std::fmt::Display) -> AuthError {
    AuthError::Store {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl KeyStore {
    pub fn new(data_dir: &Path) -> Self {
        let path = data_dir.join("keys.json");
        // A file an older version wrote world-readable is narrowed.
        if let Ok(metadata) = std::fs::metadata(&path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)) {
                Ok(()) => {
                    tracing::warn!(path = %path.display(), "the key file was readable by others: narrowed to 0600")
                }
                Err(e) => {
                    tracing::error!(path = %path.display(), error = %e, "the key file is readable by others and cannot be narrowed to 0600")
                }
            }
        }
        Self {
            path,
            cache: RwLock::new(Cache::default()),
        }
    }

    fn file_stamp(&self) -> Option<(SystemTime, u64)> {
        std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
    }

    fn read_file(&self) -> Result<Vec<KeyRecord>, AuthError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| store_error(&self.path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(store_error(&self.path, e)),
        }
    }

    fn write_file(&self, keys: &[KeyRecord]) -> Result<(), AuthError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| store_error(&self.path, e))?;
        }
        let temporary = self.path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(keys).map_err(|e| store_error(&self.path, e))?;
        // Created 0600, and narrowed in case a temporary file of a crashed run was left wider.
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut f| {
                f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
                f.write_all(text.as_bytes())?;
                f.sync_all()
            })
            .map_err(|e| store_error(&self.path, e))?;
        std::fs::rename(&temporary, &self.path).map_err(|e| store_error(&self.path, e))
    }

    fn refresh(&self) -> Result<(), AuthError> {
        let stamp = self.file_stamp();
        if self.cache.read().expect("key cache").modified == stamp && stamp.is_some() {
            return Ok(());
        }
        let keys = self.read_file()?;
        let mut cache = self.cache.write().expect("key cache");
        cache.keys = keys.into_iter().map(|k| (k.id.clone(), k)).collect();
        cache.verified.clear();
        cache.modified = stamp;
        Ok(())
    }

    /// Check a presented key.
    pub fn authenticate(&self, presented: &str) -> Result<Principal, AuthError> {
        match self.lookup(presented)? {
            Lookup::Verified(principal) => Ok(principal),
            Lookup::NeedsHashing => self.verify(presented),
        }
    }

    /// The cheap part of checking a key: its form, its id, revocation, and whether this very secret
    /// was verified before. What is left needs argon2, which costs on purpose: the caller decides
    /// whether this client may spend it now (see `api::access`).
    pub fn lookup(&self, presented: &str) -> Result<Lookup, AuthError> {
        let (id, secret) = parse_key(presented).ok_or(AuthError::Malformed)?;
        self.refresh()?;
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let cache = self.cache.read().expect("key cache");
        let record = cache.keys.get(id).ok_or(AuthError::Unknown)?;
        if record.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if cache.verified.get(id) == Some(&digest) {
            return Ok(Lookup::Verified(principal(record)));
        }
        Ok(Lookup::NeedsHashing)
    }

    /// The id and role of the key a refused key names, when there is such a key: a revoked key's
    /// use is audited under its id. Nothing here says the secret was right.
    pub fn named_key(&self, presented: &str) -> Option<(String, Role)> {
        let (id, _) = parse_key(presented)?;
        let cache = self.cache.read().expect("key cache");
        cache.keys.get(id).map(|k| (k.id.clone(), k.role))
    }

    /// Check a key's secret against its argon2 hash, and remember it for the next requests.
    pub fn verify(&self, presented: &str) -> Result<Principal, AuthError> {
        let (id, secret) = parse_key(presented).ok_or(AuthError::Malformed)?;
        let record = {
            let cache = self.cache.read().expect("key cache");
            let record = cache.keys.get(id).cloned().ok_or(AuthError::Unknown)?;
            if record.revoked_at.is_some() {
                return Err(AuthError::Revoked);
            }
            record
        };
        Argon2::default()
            .verify_password(secret.as_bytes(), record.hash.as_str())
            .map_err(|_| AuthError::Unknown)?;
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        self.cache
            .write()
            .expect("key cache")
            .verified
            .insert(id.to_string(), digest);
        Ok(principal(&record))
    }

    /// Create a key; the returned string is the only time the secret is seen.
    pub fn create(
        &self,
        name: &str,
        role: Role,
        datasets: BTreeSet<String>,
    ) -> Result<(KeyRecord, String), AuthError> {
        let id = random_token(6);
        let secret = random_token(24);
        let hash = Argon2::default()
            .hash_password(secret.as_bytes())
            .map_err(|e| store_error(&self.path, e))?
            .to_string();
        let record = KeyRecord {
            id: id.clone(),
            name: name.to_string(),
            role,
            datasets,
            hash,
            created_at: Utc::now(),
            revoked_at: None,
        };
        let mut keys = self.read_file()?;
        keys.push(record.clone());
        self.write_file(&keys)?;
        Ok((record, format!("ck_{id}_{secret}")))
    }

    pub fn list(&self) -> Result<Vec<KeyRecord>, AuthError> {
        self.read_file()
    }

    /// Revoke a key by id; returns false when there is no such key.
    pub fn revoke(&self, id: &str) -> Result<bool, AuthError> {
        let mut keys = self.read_file()?;
        let Some(record) = keys.iter_mut().find(|k| k.id == id) else {
            return Ok(false);
        };
        if record.revoked_at.is_none() {
            record.revoked_at = Some(Utc::now());
        }
        self.write_file(&keys)?;
        Ok(true)
    }
}

fn principal(record: &KeyRecord) -> Principal {
    let datasets = if record.role == Role::Partner {
        record.datasets.clone()
    } else {
        BTreeSet::new()
    };
    Principal {
        key_id: record.id.clone(),
        role: record.role,
        datasets,
    }
}

fn parse_key(presented: &str) -> Option<(&str, &str)> {
    let rest = presented.trim().strip_prefix("ck_")?;
    let (id, secret) = rest.split_once('_')?;
    let valid = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric());
    (valid(id) && valid(secret)).then_some((id, secret))
}

/// Random hex text from a cryptographically secure generator.
fn random_token(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::fill(buffer.as_mut_slice());
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_authenticate_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let datasets: BTreeSet<String> = ["residenti".to_string()].into();
        let (record, key) = store
            .create("ASL", Role::Partner, datasets.clone())
            .unwrap();
        let principal = store.authenticate(&key).unwrap();
        assert_eq!(
            principal,
            Principal {
                key_id: record.id.clone(),
                role: Role::Partner,
                datasets
            }
        );
        assert!(principal.may_read_dataset("residenti") && !principal.may_read_dataset("altro"));
        // Cached path, then a wrong secret for the same id.
        assert!(store.authenticate(&key).is_ok());
        let wrong = format!("ck_{}_{}", record.id, "0".repeat(48));
        assert_eq!(store.authenticate(&wrong), Err(AuthError::Unknown));
        // The file never holds the secret.
        let file = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
        assert!(!file.contains(key.rsplit('_').next().unwrap()));
        let mode = std::fs::metadata(dir.path().join("keys.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "keys.json is {mode:o}");
        assert!(store.revoke(&record.id).unwrap());
        assert_eq!(store.authenticate(&key), Err(AuthError::Revoked));
        assert_eq!(
            store.named_key(&key),
            Some((record.id.clone(), Role::Partner))
        );
        assert_eq!(
            store.authenticate("Bearer nonsense"),
            Err(AuthError::Malformed)
        );
    }
}
