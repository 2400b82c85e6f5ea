//! Watching files for changes by what their paths resolve to (target, device, inode, size,
//! mtime): this catches a Kubernetes Secret or ConfigMap update, which swaps a `..data`
//! symlink instead of writing the files, as well as editors' write-and-rename.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

type Fingerprint = Vec<Option<(PathBuf, u64, u64, u64, i64, i64)>>;

pub struct FileWatch {
    files: Vec<PathBuf>,
    seen: Mutex<Fingerprint>,
}

impl FileWatch {
    /// Watch `files` from their present state.
    pub fn new(files: Vec<PathBuf>) -> FileWatch {
        let seen = Mutex::new(fingerprint(&files));
        FileWatch { files, seen }
    }

    /// Did any file change since the last look (or since [`FileWatch::mark_current`])? The
    /// new state is remembered either way, so a broken file is reported once, not at every
    /// look; its next change is seen again.
    pub fn changed(&self) -> bool {
        let now = fingerprint(&self.files);
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if *seen == now {
            return false;
        }
        *seen = now;
        true
    }

    /// The files as they are now count as seen (after a reload triggered otherwise).
    pub fn mark_current(&self) {
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = fingerprint(&self.files);
    }
}

fn fingerprint(files: &[PathBuf]) -> Fingerprint {
    files
        .iter()
        .map(|f| {
            let target = std::fs::canonicalize(f).ok()?;
            let m = std::fs::metadata(&target).ok()?;
            Some((
                target,
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_seen_once_and_a_symlink_swap_counts() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("v1")).unwrap();
        std::fs::write(d.join("v1/keys.toml"), "a").unwrap();
        std::os::unix::fs::symlink("v1", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/keys.toml", d.join("keys.toml")).unwrap();
        let watch = FileWatch::new(vec![d.join("keys.toml")]);
        assert!(!watch.changed());
        std::fs::create_dir(d.join("v2")).unwrap();
        std::fs::write(d.join("v2/keys.toml"), "b").unwrap();
        std::os::unix::fs::symlink("v2", d.join("..tmp")).unwrap();
        std::fs::rename(d.join("..tmp"), d.join("..data")).unwrap();
        assert!(watch.changed());
        assert!(!watch.changed(), "reported once");
        std::fs::remove_file(d.join("v2/keys.toml")).unwrap();
        assert!(watch.changed(), "a file that disappears is a change too");
    }
}
