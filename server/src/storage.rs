//! Where uploaded files live. [`Storage`] is a small key → bytes interface; [`LocalStorage`] keeps the files in
//! a folder (`DATA_DIR/media/` by default). An object store can replace it later without touching its callers.
//!
//! Keys are relative paths such as `images/2026/11/<random>_display.jpg`: segments of letters, digits, `-`, `_`
//! and `.`, never `..` or a segment starting with a dot, so a key can never leave the storage folder (and never
//! names one of the temporary files writes go through).

use std::{
    io,
    path::{Path, PathBuf},
};

use async_trait::async_trait;

/// Longest key accepted.
pub const MAX_KEY_LEN: usize = 255;

/// A store of immutable blobs by key.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// Stores `bytes` under `key`, replacing what was there. Readers see the old content or the new, never a
    /// part of it.
    async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> io::Result<()>;
    /// The content under `key`, or `None` when there is none.
    async fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>>;
    /// Removes `key`; removing a key that does not exist is not an error.
    async fn delete(&self, key: &str) -> io::Result<()>;
}

/// Whether `key` is a well-formed storage key (see the module documentation).
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
}

fn check_key(key: &str) -> io::Result<()> {
    if is_valid_key(key) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("invalid storage key {key:?}"),
        ))
    }
}

/// Files in a local folder, one file per key.
#[derive(Debug, Clone)]
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// A store rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(&root)?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

#[async_trait]
impl Storage for LocalStorage {
    async fn put(&self, key: &str, bytes: Vec<u8>, _content_type: &str) -> io::Result<()> {
        let path = self.path(key)?;
        let dir = path
            .parent()
            .ok_or_else(|| io::Error::other("storage key has no parent folder"))?
            .to_path_buf();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            // Write a hidden temporary file next to the target, flush it to disk, then rename it into place:
            // a crash leaves either nothing or a stray temporary file, never a half-written image.
            let tmp = dir.join(format!(".tmp-{}", crate::util::random_token(12)));
            let written = (|| {
                use std::io::Write;
                let mut file = std::fs::File::create(&tmp)?;
                file.write_all(&bytes)?;
                file.sync_all()?;
                std::fs::rename(&tmp, &path)
            })();
            if written.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            written
        })
        .await
        .map_err(io::Error::other)?
    }

    async fn get(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            // A key whose "folder" is a file, e.g. `a.jpg/b.jpg`.
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, key: &str) -> io::Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape_the_folder() {
        assert!(is_valid_key("images/2026/11/abc_DEF-1_display.jpg"));
        for bad in [
            "",
            "..",
            "images/../secret",
            "../x.jpg",
            "/etc/passwd",
            "images//x.jpg",
            "images/x.jpg/",
            "images/.tmp-abc",
            "images\\x.jpg",
            "images/x y.jpg",
            "images/%2e%2e/x",
        ] {
            assert!(!is_valid_key(bad), "{bad:?} must be refused");
        }
        assert!(!is_valid_key(&"a".repeat(MAX_KEY_LEN + 1)));
    }

    #[tokio::test]
    async fn put_get_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStorage::new(dir.path().join("media")).unwrap();
        let key = "images/2026/11/k_display.jpg";
        assert_eq!(store.get(key).await.unwrap(), None);
        store
            .put(key, b"first".to_vec(), "image/jpeg")
            .await
            .unwrap();
        store
            .put(key, b"second".to_vec(), "image/jpeg")
            .await
            .unwrap();
        assert_eq!(
            store.get(key).await.unwrap().as_deref(),
            Some(&b"second"[..])
        );
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("media/images/2026/11"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["k_display.jpg"]);
        store.delete(key).await.unwrap();
        store.delete(key).await.unwrap();
        assert_eq!(store.get(key).await.unwrap(), None);
        assert!(store.get("../escape").await.is_err());
        assert!(store.put("a/../../b", vec![1], "x").await.is_err());
    }
}
