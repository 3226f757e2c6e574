//! The state file on disk: read once at start, written atomically on every change.
//!
//! A write goes to a temporary file in the same directory, is fsynced, renamed over the
//! state file and the directory is fsynced, so that after a crash or a power cut the file
//! is either the old document or the new one, never a mix or an empty file (rename is
//! atomic within a file system, POSIX `rename(2)`).
//!
//! A failed write is not fatal: what the daemon does follows the document in memory (the
//! drain the operator asked for is in force), the error is logged and shown in `/status`,
//! and the next change or [`StateFile::retry`] writes again.

use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{ParseError, StateDocument};
use crate::status::model::{StateFileStatus, StateWriteStatus};

/// The state file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// It exists but cannot be read.
    #[error("state file {path}: cannot read it: {source}; the daemon does not start without it (it may hold operator drains)")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a state document this build can use.
    #[error("state file {path}: {source}; the daemon does not start without it, so that nothing an operator drained is announced again: repair it, or move it aside to start with no saved drains")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: ParseError,
    },
    /// Writing it failed (the daemon goes on with the document in memory).
    #[error("state file {path}: cannot write it: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: WriteError,
    },
}

/// Which step of an atomic write failed.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
pub struct WriteError {
    /// `create directory DIR`, `write temporary file`, `sync temporary file`, `rename`,
    /// `sync directory DIR`.
    pub step: String,
    /// Why.
    pub source: std::io::Error,
}

fn step(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> WriteError {
    let step = step.into();
    move |source| WriteError { step, source }
}

/// The document and where it lives.
#[derive(Debug)]
pub struct StateFile {
    /// `None`: kept in memory only (the embedded default config, library users).
    path: Option<PathBuf>,
    doc: StateDocument,
    /// The document in memory is not what the file holds (the last write failed).
    dirty: bool,
    /// Read, never written (a dry run).
    read_only: bool,
    last_write: Option<StateWriteStatus>,
}

impl StateFile {
    /// Reads the file at `path` (a missing file is an empty document: the first start);
    /// `None` keeps the state in memory only.
    pub fn open(path: Option<PathBuf>) -> Result<Self, StateError> {
        let doc = match &path {
            None => StateDocument::default(),
            Some(p) => read(p)?,
        };
        Ok(StateFile {
            path,
            doc,
            dirty: false,
            read_only: false,
            last_write: None,
        })
    }

    /// The same file, never written: changes stay in memory (a dry run reads the file
    /// but must not write it: the real daemon may be using it).
    pub fn read_only(self) -> Self {
        StateFile {
            read_only: true,
            ..self
        }
    }

    /// Whether changes stay in memory although there is a file ([`StateFile::read_only`]).
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Where the file is, if there is one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The document as the daemon follows it.
    pub fn document(&self) -> &StateDocument {
        &self.doc
    }

    /// Changes the document with `change` and, if that changed it, writes the file.
    /// The change stands in memory even when the write fails (the error is returned for
    /// the caller to log and the next change or [`StateFile::retry`] writes again).
    pub fn update(
        &mut self,
        wall: SystemTime,
        change: impl FnOnce(&mut StateDocument),
    ) -> Result<(), StateError> {
        let before = self.doc.clone();
        change(&mut self.doc);
        if self.doc == before && !self.dirty {
            return Ok(());
        }
        self.write(wall)
    }

    /// A write failed and has not succeeded since: [`StateFile::retry`] has work to do.
    pub fn needs_retry(&self) -> bool {
        self.dirty
    }

    /// Writes again after a failed write; nothing to do otherwise.
    pub fn retry(&mut self, wall: SystemTime) -> Result<(), StateError> {
        if self.dirty {
            self.write(wall)
        } else {
            Ok(())
        }
    }

    fn write(&mut self, wall: SystemTime) -> Result<(), StateError> {
        let Some(path) = self.path.as_ref().filter(|_| !self.read_only) else {
            return Ok(());
        };
        let result = write_atomic(path, self.doc.render().as_bytes());
        self.dirty = result.is_err();
        self.last_write = Some(StateWriteStatus {
            at: crate::coordinator::core::rfc3339(wall),
            ok: result.is_ok(),
            error: result.as_ref().err().map(ToString::to_string),
        });
        result.map_err(|source| StateError::Write {
            path: path.clone(),
            source,
        })
    }

    /// For `/status` (`daemon.state_file`); `None` without a file.
    pub fn status(&self) -> Option<StateFileStatus> {
        let path = self.path.as_ref()?;
        Some(StateFileStatus {
            path: path.display().to_string(),
            drains: self.doc.drains.keys().cloned().collect(),
            addresses: self.doc.addresses.len(),
            last_write: self.last_write.clone(),
        })
    }
}

fn read(path: &Path) -> Result<StateDocument, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(StateDocument::default());
        }
        Err(source) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    StateDocument::parse(&text).map_err(|source| StateError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Replaces `path` with `bytes` atomically and durably (see the module doc). The
/// directory is created (mode 0700) when missing; systemd's `StateDirectory=` creates it
/// for the packaged unit.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let shown = dir.display();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(step(format!("create directory {shown}")))?;
    // Created with mode 0600 in `dir`, so the rename stays within one file system.
    let mut tmp = tempfile::Builder::new()
        .prefix(".state.")
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(step(format!("create a temporary file in {shown}")))?;
    tmp.write_all(bytes)
        .map_err(step("write the temporary file"))?;
    tmp.as_file()
        .sync_all()
        .map_err(step("sync the temporary file"))?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .map_err(step("rename the temporary file over the state file"))?;
    // The rename itself is durable only once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(step(format!("sync directory {shown}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::SavedDrain;

    fn drain(reason: &str) -> SavedDrain {
        SavedDrain {
            force: false,
            reason: reason.into(),
            at: "2026-12-07T10:00:00.000Z".into(),
            withdrawn: false,
        }
    }

    #[test]
    fn a_missing_file_is_an_empty_state_and_a_change_creates_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("sub").join("state.json");
        let mut state = StateFile::open(Some(path.clone())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(state.document(), &StateDocument::default());
        assert!(!path.exists(), "nothing written before a change");
        state
            .update(SystemTime::now(), |d| d.set_drain("web", drain("x")))
            .unwrap_or_else(|e| panic!("{e}"));
        let again = StateFile::open(Some(path.clone())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(again.document(), state.document());
        let status = state.status().unwrap_or_else(|| panic!("no status"));
        assert_eq!(status.drains, vec!["web".to_string()]);
        assert!(status.last_write.is_some_and(|w| w.ok && w.error.is_none()));
        // No temporary file left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap_or(dir.path()))
            .unwrap_or_else(|e| panic!("{e}"))
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn a_corrupt_file_refuses_with_its_path_and_place() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{\"version\": 1,\n \"drains\": {\"web\": ").unwrap_or_default();
        let e = StateFile::open(Some(path.clone())).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "state file {}: line 2, column 19: EOF while parsing a value; the daemon does not \
                 start without it, so that nothing an operator drained is announced again: \
                 repair it, or move it aside to start with no saved drains",
                path.display()
            )
        );
    }

    #[test]
    fn a_failed_write_keeps_the_change_and_is_retried() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let blocker = dir.path().join("blocker");
        let path = blocker.join("state.json");
        let mut state = StateFile::open(Some(path.clone())).unwrap_or_else(|e| panic!("{e}"));
        // Since the start, the state directory became a regular file: writes fail (and
        // as root, permission bits would not make them fail).
        std::fs::write(&blocker, "").unwrap_or_default();
        let e = state
            .update(SystemTime::now(), |d| d.set_drain("web", drain("x")))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("state file {}: cannot write it: ", path.display())),
            "{e}"
        );
        assert!(
            state.document().drains.contains_key("web"),
            "the drain stands"
        );
        let status = state.status().unwrap_or_else(|| panic!("no status"));
        assert!(status
            .last_write
            .is_some_and(|w| !w.ok && w.error.is_some()));
        // Once the directory can be made, the retry writes the document.
        std::fs::remove_file(&blocker).unwrap_or_default();
        state
            .retry(SystemTime::now())
            .unwrap_or_else(|e| panic!("{e}"));
        let again = StateFile::open(Some(path)).unwrap_or_else(|e| panic!("{e}"));
        assert!(again.document().drains.contains_key("web"));
    }

    #[test]
    fn a_state_file_that_cannot_be_read_refuses_the_start() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        // A directory where the file should be: read(2) fails with EISDIR.
        let path = dir.path().join("state.json");
        std::fs::create_dir(&path).unwrap_or_default();
        let e = StateFile::open(Some(path.clone())).unwrap_err();
        assert!(
            e.to_string().starts_with(&format!(
                "state file {}: cannot read it: Is a directory",
                path.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn a_read_only_state_file_is_never_written() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("state.json");
        let mut state = StateFile::open(Some(path.clone()))
            .unwrap_or_else(|e| panic!("{e}"))
            .read_only();
        state
            .update(SystemTime::now(), |d| d.set_drain("web", drain("")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(state.document().drains.contains_key("web"));
        assert!(!path.exists());
        assert_eq!(state.path(), Some(path.as_path()));
    }

    #[test]
    fn without_a_path_the_state_is_kept_in_memory() {
        let mut state = StateFile::open(None).unwrap_or_else(|e| panic!("{e}"));
        state
            .update(SystemTime::now(), |d| d.set_drain("web", drain("")))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(state.document().drains.contains_key("web"));
        assert!(state.status().is_none());
    }
}
