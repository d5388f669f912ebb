//! Per-resource history persisted across runs (first seen, consecutive sightings, attempts, last
//! error) in a small JSON file written atomically. History, never truth about the cloud: every pass
//! discovers afresh.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::model::ResourceKey;
use crate::outcome::LeftReason;
use crate::selection::History;

/// Why the state file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("state file {path}: not a cloud-janitor state file: {source}")]
    Corrupt {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// What the janitor remembers about one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub first_seen: DateTime<Utc>,
    /// The pass that saw it last.
    pub last_pass: u64,
    /// Consecutive passes that saw it, up to `last_pass`.
    pub sightings: u32,
    /// Passes that ended with it selected and still there.
    #[serde(default)]
    pub failed_passes: u32,
    /// Why it stayed last time, as a sentence.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Why it stayed last time, as the bounded label of [`LeftReason::label`].
    #[serde(default)]
    pub last_outcome: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Stored {
    pass: u64,
    /// Keyed by `cloud/kind/id`.
    resources: BTreeMap<String, Entry>,
}

/// The store; in memory only when no file is configured.
#[derive(Debug, Default)]
pub struct StateStore {
    path: Option<PathBuf>,
    stored: Stored,
}

fn storage_key(key: &ResourceKey) -> String {
    format!("{}/{}/{}", key.cloud, key.kind, key.id)
}

impl StateStore {
    /// Opens `path` (a missing file is an empty history), or an in-memory store.
    pub fn open(path: Option<&Path>) -> Result<Self, StateError> {
        let Some(path) = path else {
            return Ok(StateStore::default());
        };
        let shown = path.display().to_string();
        let stored = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StateError::Corrupt { path: shown, source })?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(source) => return Err(StateError::Io { path: shown, source }),
        };
        Ok(StateStore {
            path: Some(path.to_path_buf()),
            stored,
        })
    }

    /// Starts a pass: returns its number.
    pub fn begin_pass(&mut self) -> u64 {
        self.stored.pass += 1;
        self.stored.pass
    }

    /// Records that `pass` saw these resources of `clouds` (the clouds that were listed
    /// successfully): entries of those clouds not seen are forgotten, others are kept untouched.
    pub fn record_sightings(
        &mut self,
        pass: u64,
        clouds: &HashSet<String>,
        seen: &[ResourceKey],
        now: DateTime<Utc>,
    ) {
        let seen_keys: HashSet<String> = seen.iter().map(storage_key).collect();
        self.stored.resources.retain(|key, _| {
            let cloud = key.split('/').next().unwrap_or_default();
            !clouds.contains(cloud) || seen_keys.contains(key)
        });
        for key in seen_keys {
            let entry = self.stored.resources.entry(key).or_insert(Entry {
                first_seen: now,
                last_pass: 0,
                sightings: 0,
                failed_passes: 0,
                last_error: None,
                last_outcome: None,
            });
            entry.sightings = if entry.last_pass + 1 == pass {
                entry.sightings + 1
            } else {
                1
            };
            entry.last_pass = pass;
        }
    }

    /// The history selection needs.
    pub fn history(&self, key: &ResourceKey) -> Option<History> {
        self.stored.resources.get(&storage_key(key)).map(|e| History {
            first_seen: e.first_seen,
            sightings: e.sightings,
        })
    }

    pub fn entry(&self, key: &ResourceKey) -> Option<&Entry> {
        self.stored.resources.get(&storage_key(key))
    }

    /// Records that a selected resource stayed this pass, and why. Returns in how many passes it
    /// has stayed so far, so repeated failures show in reports.
    pub fn record_left(&mut self, key: &ResourceKey, reason: &LeftReason) -> u32 {
        match self.stored.resources.get_mut(&storage_key(key)) {
            Some(entry) => {
                entry.failed_passes += 1;
                entry.last_error = Some(reason.to_string());
                entry.last_outcome = Some(reason.label().to_string());
                entry.failed_passes
            }
            None => 1,
        }
    }

    /// Writes the file atomically when one is configured: a temporary file, flushed to disk, renamed
    /// over the old one, and the directory flushed too, so a crash leaves the old or the new file,
    /// never half of one.
    pub fn save(&self) -> Result<(), StateError> {
        let Some(path) = &self.path else { return Ok(()) };
        let shown = path.display().to_string();
        let io = |source| StateError::Io {
            path: shown.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let temporary = path.with_extension("tmp");
        let bytes = serde_json::to_vec_pretty(&self.stored).map_err(|source| StateError::Corrupt {
            path: shown.clone(),
            source,
        })?;
        let mut file = std::fs::File::create(&temporary).map_err(io)?;
        std::io::Write::write_all(&mut file, &bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&temporary, path).map_err(io)?;
        match path.parent().filter(|p| !p.as_os_str().is_empty()) {
            Some(directory) => std::fs::File::open(directory)
                .and_then(|d| d.sync_all())
                .map_err(io),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    #[test]
    fn sightings_count_consecutive_passes_and_survive_a_restart() {
        let dir = std::env::temp_dir().join(format!("cj-state-{}", std::process::id()));
        let path = dir.join("state.json");
        let disk = ResourceKey::new("lab", Kind::Disk, "local:vm-9-disk-0");
        let busy = LeftReason::Busy {
            state: "locked".into(),
        };
        let clouds = HashSet::from(["lab".to_string()]);
        let t0 = Utc::now();
        let mut store = StateStore::open(Some(&path)).unwrap();
        let pass = store.begin_pass();
        store.record_sightings(pass, &clouds, std::slice::from_ref(&disk), t0);
        assert_eq!(store.history(&disk).map(|h| h.sightings), Some(1));
        store.save().unwrap();

        let mut reopened = StateStore::open(Some(&path)).unwrap();
        let pass = reopened.begin_pass();
        reopened.record_sightings(
            pass,
            &clouds,
            std::slice::from_ref(&disk),
            t0 + chrono::Duration::hours(1),
        );
        assert_eq!(
            reopened.history(&disk),
            Some(History {
                first_seen: t0,
                sightings: 2
            })
        );
        assert_eq!(reopened.record_left(&disk, &busy), 1);
        reopened.save().unwrap();
        let mut again = StateStore::open(Some(&path)).unwrap();
        assert_eq!(again.record_left(&disk, &busy), 2, "counted across restarts");
        assert_eq!(
            again.entry(&disk).and_then(|e| e.last_error.clone()).as_deref(),
            Some("busy: locked")
        );
        assert_eq!(
            again.entry(&disk).and_then(|e| e.last_outcome.clone()).as_deref(),
            Some("busy")
        );
        let mut reopened = again;

        // A pass that does not see it forgets it; a pass of another cloud does not.
        let pass = reopened.begin_pass();
        reopened.record_sightings(pass, &HashSet::from(["other".to_string()]), &[], t0);
        assert!(reopened.history(&disk).is_some());
        let pass = reopened.begin_pass();
        reopened.record_sightings(pass, &clouds, &[], t0);
        assert!(reopened.history(&disk).is_none());
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_corrupt_file_is_named_in_the_error() {
        let path = std::env::temp_dir().join(format!("cj-corrupt-{}.json", std::process::id()));
        std::fs::write(&path, "not json").unwrap();
        let error = StateStore::open(Some(&path)).unwrap_err().to_string();
        assert!(
            error.contains(&path.display().to_string()) && error.contains("not a cloud-janitor state file")
        );
        std::fs::remove_file(path).ok();
    }
}
