//! File probe: presence (or, inverted, absence) of a file, e.g. a maintenance file.

use std::path::PathBuf;

use super::{Probe, ProbeOutcome};

/// `type = "file"`.
#[derive(Debug, Clone)]
pub struct FileProbe {
    path: PathBuf,
    invert: bool,
}

impl FileProbe {
    /// Up while `path` exists, or while it does not if `invert`.
    pub fn new(path: PathBuf, invert: bool) -> Self {
        FileProbe { path, invert }
    }
}

impl Probe for FileProbe {
    async fn probe(&self) -> ProbeOutcome {
        ProbeOutcome::timed(async {
            let exists = tokio::fs::try_exists(&self.path)
                .await
                .map_err(|e| format!("cannot check {}: {e}", self.path.display()))?;
            let detail = format!(
                "{} {}",
                self.path.display(),
                if exists { "exists" } else { "does not exist" }
            );
            if exists != self.invert {
                Ok(detail)
            } else {
                Err(detail)
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_probe_follows_presence_and_inverts() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("maintenance");
        let present = FileProbe::new(path.clone(), false);
        let absent = FileProbe::new(path.clone(), true);
        assert!(!present.probe().await.ok);
        assert!(absent.probe().await.ok);
        std::fs::write(&path, b"").unwrap_or_else(|e| panic!("{e}"));
        let out = present.probe().await;
        assert!(out.ok);
        assert_eq!(out.detail, format!("{} exists", path.display()));
        assert!(!absent.probe().await.ok);
    }
}
