//! The JSON state file of earlier versions (`state_file`), read once to seed the history.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::Record;
use crate::model::{Kind, ResourceKey};

/// An entry as earlier versions wrote it.
#[derive(Debug, Deserialize)]
struct Entry {
    first_seen: DateTime<Utc>,
    last_pass: u64,
    sightings: u32,
    #[serde(default)]
    failed_passes: u32,
    #[serde(default)]
    last_error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Stored {
    pass: u64,
    /// Keyed by `cloud/kind/id`; ids may hold `/` themselves.
    resources: BTreeMap<String, Entry>,
}

/// What a JSON state file held.
pub(super) struct Imported {
    pub pass: u64,
    pub records: HashMap<ResourceKey, Record>,
}

/// Reads `path`; `Ok(None)` when there is no such file.
pub(super) fn read(path: &Path) -> Result<Option<Imported>, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("state file {}: {error}", path.display())),
    };
    let stored: Stored = serde_json::from_slice(&bytes).map_err(|error| {
        format!(
            "state file {}: not a cloud-janitor state file: {error}",
            path.display()
        )
    })?;
    let mut records = HashMap::new();
    for (stored_key, entry) in stored.resources {
        let mut parts = stored_key.splitn(3, '/');
        let (Some(cloud), Some(kind), Some(id)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Some(kind) = Kind::parse(kind) else { continue };
        let mut record = Record::new("", entry.first_seen);
        record.last_pass = entry.last_pass;
        record.sightings = entry.sightings;
        record.left_streak = entry.failed_passes;
        record.last_error = entry.last_error;
        records.insert(ResourceKey::new(cloud, kind, id), record);
    }
    Ok(Some(Imported {
        pass: stored.pass,
        records,
    }))
}
