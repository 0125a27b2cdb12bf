//! A snapshot's files: the list that names them and the content store that
//! keeps them.
//!
//! A snapshot is a RocksDB checkpoint of the state database. Its SST files
//! never change, and most of them are the same from one snapshot to the
//! next: compaction rewrites the small upper levels often, the large bottom
//! level rarely. So a snapshot is kept, and shipped, as its files: each is
//! listed with its size and content hash ([`FileEntry`], BLAKE3), and the
//! **store** (`snapshots/files/<hash>`) holds each content once.
//!
//! Building a snapshot hard-links the checkpoint's SSTs into the store: no
//! byte is copied. The other files of a checkpoint (RocksDB's `MANIFEST`,
//! `CURRENT`, `OPTIONS`, WAL) are small and copied, because RocksDB may
//! write to them in place once they belong to a live database, and a store
//! file must never change. An SST is hashed once: a later build finds the
//! same file (same name, size and inode: the same hard link) in the store
//! and takes its hash from the previous snapshot's list ([`Store::describe`]).
//!
//! A receiver tells which files its store lacks ([`Store::lacking`]), writes
//! those into an incoming directory as they arrive, hashing them on the way
//! ([`Incoming`]), and installs by putting every file into its store and
//! assembling a fresh checkpoint directory from there ([`Store::put`],
//! [`Store::assemble`]). A file enters a store only with the size and hash
//! of its entry, so a corrupt or truncated file is refused, with its name,
//! before anything is published or installed.
//!
//! The store is pruned to the files of the newest published snapshot
//! ([`Store::retain`]). This module knows nothing of Raft: the state machine
//! keeps each snapshot's list beside its Raft metadata.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One file of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name in the checkpoint directory (RocksDB's: `000123.sst`).
    pub name: String,
    pub size: u64,
    /// BLAKE3 of its content, 64 lower-case hex digits; its name in a store.
    pub hash: String,
}

impl FileEntry {
    /// Both the name and the hash become paths: a name must be a plain file
    /// name, a hash 64 hex digits.
    fn check(&self) -> io::Result<()> {
        let plain = !self.name.is_empty()
            && self.name != "."
            && self.name != ".."
            && !self.name.contains(['/', '\\', '\0']);
        if !plain {
            return Err(invalid(format!(
                "snapshot file name {:?} is not a plain file name",
                self.name
            )));
        }
        let hex = self.hash.len() == 64
            && self
                .hash
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(invalid(format!(
                "snapshot file {}: hash {:?} is not 64 lower-case hex digits",
                self.name, self.hash
            )));
        }
        Ok(())
    }
}

/// Checks a file list that came from elsewhere: plain names, well-formed
/// hashes, no name twice.
pub fn check_files(files: &[FileEntry]) -> io::Result<()> {
    let mut names = HashSet::new();
    for f in files {
        f.check()?;
        if !names.insert(f.name.as_str()) {
            return Err(invalid(format!("snapshot file {} is listed twice", f.name)));
        }
    }
    Ok(())
}

/// A snapshot's data as openraft hands it around: its files and where they
/// are.
#[derive(Clone, Debug)]
pub struct SnapshotData {
    pub files: Vec<FileEntry>,
    /// The store the files of a published snapshot are in, by hash.
    pub store: Store,
    /// A snapshot being received: the directory its files are in, by name.
    /// `None` for a published snapshot.
    pub incoming: Option<PathBuf>,
}

impl SnapshotData {
    /// Where the file `f` of this snapshot is.
    pub fn path(&self, f: &FileEntry) -> PathBuf {
        match &self.incoming {
            Some(dir) => dir.join(&f.name),
            None => self.store.path(f),
        }
    }

    /// Sum of the files' sizes.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

/// A directory of files named by their content hash.
#[derive(Clone, Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `dir`, created if missing; leftovers of an interrupted
    /// copy are removed.
    pub fn open(dir: &Path) -> io::Result<Store> {
        fs::create_dir_all(dir).map_err(|e| at(dir, e))?;
        for entry in fs::read_dir(dir).map_err(|e| at(dir, e))? {
            let p = entry?.path();
            if p.extension().is_some_and(|e| e == "tmp") {
                fs::remove_file(&p).map_err(|e| at(&p, e))?;
            }
        }
        Ok(Store {
            dir: dir.to_path_buf(),
        })
    }

    /// Where the content of `f` is kept.
    pub fn path(&self, f: &FileEntry) -> PathBuf {
        self.dir.join(&f.hash)
    }

    fn holds(&self, f: &FileEntry) -> bool {
        fs::metadata(self.path(f)).is_ok_and(|m| m.len() == f.size)
    }

    /// The files of `files` whose content this store does not hold.
    pub fn lacking<'a>(&self, files: &'a [FileEntry]) -> Vec<&'a FileEntry> {
        files.iter().filter(|f| !self.holds(f)).collect()
    }

    /// Lists the files of the checkpoint `dir`, by name. An SST that is the
    /// very file (same inode) this store holds for the same name in
    /// `previous` keeps that entry's hash; every other file is hashed.
    pub fn describe(&self, dir: &Path, previous: &[FileEntry]) -> io::Result<Vec<FileEntry>> {
        let previous: HashMap<&str, &FileEntry> =
            previous.iter().map(|f| (f.name.as_str(), f)).collect();
        list_checkpoint(dir, |name, meta| {
            let p = previous.get(name)?;
            let same = immutable(name)
                && p.size == meta.len()
                && fs::metadata(self.path(p))
                    .is_ok_and(|s| (s.dev(), s.ino()) == (meta.dev(), meta.ino()));
            same.then(|| p.hash.clone())
        })
    }

    /// Puts `src`, the content of `f`, into the store unless it is there.
    /// Its size must be `f`'s; its hash was computed from it (a build) or
    /// checked as it arrived ([`Incoming`]). The caller syncs the store
    /// ([`Store::sync`]).
    pub fn put(&self, src: &Path, f: &FileEntry) -> io::Result<()> {
        if self.holds(f) {
            return Ok(());
        }
        let size = fs::metadata(src).map_err(|e| at(src, e))?.len();
        if size != f.size {
            return Err(invalid(format!(
                "snapshot file {} is {size} bytes, its entry says {}",
                f.name, f.size
            )));
        }
        place(src, &self.path(f), &f.name)
    }

    /// Makes the store's new entries durable.
    pub fn sync(&self) -> io::Result<()> {
        sync_dir(&self.dir)
    }

    /// Creates the checkpoint directory `dest` from the store's copies of
    /// `files`: SSTs linked, the rest copied; synced.
    pub fn assemble(&self, files: &[FileEntry], dest: &Path) -> io::Result<()> {
        fs::create_dir_all(dest).map_err(|e| at(dest, e))?;
        for f in files {
            if !self.holds(f) {
                return Err(invalid(format!(
                    "snapshot file {} ({} bytes, {}) is not in the store",
                    f.name, f.size, f.hash
                )));
            }
            place(&self.path(f), &dest.join(&f.name), &f.name)?;
        }
        sync_dir(dest)
    }

    /// Removes every content that is not `keep`'s; returns how many.
    pub fn retain<'a>(&self, keep: impl IntoIterator<Item = &'a FileEntry>) -> io::Result<usize> {
        let keep: HashSet<&str> = keep.into_iter().map(|f| f.hash.as_str()).collect();
        let mut removed = 0;
        for entry in fs::read_dir(&self.dir).map_err(|e| at(&self.dir, e))? {
            let entry = entry?;
            if !keep.contains(entry.file_name().to_string_lossy().as_ref()) {
                let p = entry.path();
                fs::remove_file(&p).map_err(|e| at(&p, e))?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

struct Writing {
    file: fs::File,
    written: u64,
    hasher: blake3::Hasher,
}

/// A snapshot being received into a directory. Files the receiver's store
/// holds are linked in at once; the shipped ones are written as their
/// bytes arrive, one after the other, each file's size saying where the
/// next begins.
pub struct Incoming {
    dir: PathBuf,
    /// Shipped files not yet complete, the one being written first.
    pending: VecDeque<FileEntry>,
    /// The file being written: how many of its bytes are, and their hash.
    current: Option<Writing>,
}

impl Incoming {
    /// Starts receiving `files` into `dir`; `shipped` names the files that
    /// will arrive, in the order they will. Every other file must be in
    /// `store`.
    pub fn new(
        dir: &Path,
        store: &Store,
        files: &[FileEntry],
        shipped: &[String],
    ) -> io::Result<Incoming> {
        check_files(files)?;
        let by_name: HashMap<&str, &FileEntry> =
            files.iter().map(|f| (f.name.as_str(), f)).collect();
        let mut pending = VecDeque::new();
        for name in shipped {
            let f = by_name.get(name.as_str()).ok_or_else(|| {
                invalid(format!("shipped snapshot file {name:?} is not in the list"))
            })?;
            if pending.iter().any(|p: &FileEntry| &p.name == name) {
                return Err(invalid(format!("snapshot file {name} is shipped twice")));
            }
            pending.push_back((*f).clone());
        }
        fs::create_dir_all(dir).map_err(|e| at(dir, e))?;
        for f in files.iter().filter(|f| !shipped.contains(&f.name)) {
            if !store.holds(f) {
                return Err(invalid(format!(
                    "snapshot file {} ({}) was not shipped and this node's store lacks it",
                    f.name, f.hash
                )));
            }
            place(&store.path(f), &dir.join(&f.name), &f.name)?;
        }
        let mut incoming = Incoming {
            dir: dir.to_path_buf(),
            pending,
            current: None,
        };
        incoming.skip_empty()?;
        Ok(incoming)
    }

    /// Creates the empty files next in line: no bytes will say they begin.
    fn skip_empty(&mut self) -> io::Result<()> {
        while self.current.is_none() && self.pending.front().is_some_and(|f| f.size == 0) {
            let f = self.pending.pop_front().expect("checked");
            let path = self.dir.join(&f.name);
            fs::File::create(&path).map_err(|e| at(&path, e))?;
        }
        Ok(())
    }

    /// Writes the next bytes of the shipped files. A file whose last byte
    /// arrived is refused, and removed, unless its hash is its entry's.
    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let Some(f) = self.pending.front() else {
                return Err(invalid(format!(
                    "{} bytes arrived after the last shipped snapshot file",
                    data.len()
                )));
            };
            let path = self.dir.join(&f.name);
            if self.current.is_none() {
                let file = fs::File::create(&path).map_err(|e| at(&path, e))?;
                self.current = Some(Writing {
                    file,
                    written: 0,
                    hasher: blake3::Hasher::new(),
                });
            }
            let w = self.current.as_mut().expect("just set");
            let n = (f.size - w.written).min(data.len() as u64) as usize;
            w.file.write_all(&data[..n]).map_err(|e| at(&path, e))?;
            w.hasher.update(&data[..n]);
            w.written += n as u64;
            data = &data[n..];
            if w.written == f.size {
                let hash = w.hasher.finalize().to_hex().to_string();
                if hash != f.hash {
                    let _ = fs::remove_file(&path);
                    return Err(invalid(format!(
                        "snapshot file {}: the content received hashes to {hash}, not {}",
                        f.name, f.hash
                    )));
                }
                w.file.sync_all().map_err(|e| at(&path, e))?;
                self.current = None;
                self.pending.pop_front();
                self.skip_empty()?;
            }
        }
        Ok(())
    }

    /// Ends the stream: every shipped file must be complete.
    pub fn finish(self) -> io::Result<()> {
        if let Some(f) = self.pending.front() {
            let written = self.current.as_ref().map_or(0, |w| w.written);
            return Err(invalid(format!(
                "the snapshot stream ended with file {} at {written} of {} bytes",
                f.name, f.size
            )));
        }
        sync_dir(&self.dir)
    }
}

/// The files of the checkpoint `dir`, by name, with their sizes and hashes:
/// `known` gives a file's hash when it is known without reading it (its
/// name and metadata), else the file is hashed.
pub fn list_checkpoint(
    dir: &Path,
    known: impl Fn(&str, &fs::Metadata) -> Option<String>,
) -> io::Result<Vec<FileEntry>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| at(dir, e))? {
        let path = entry?.path();
        let meta = fs::metadata(&path).map_err(|e| at(&path, e))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| invalid(format!("{}: not a UTF-8 name", path.display())))?
            .to_string();
        if !meta.is_file() {
            return Err(invalid(format!(
                "{}: a checkpoint holds files only",
                path.display()
            )));
        }
        let hash = match known(&name, &meta) {
            Some(hash) => hash,
            None => hash_file(&path)?,
        };
        files.push(FileEntry {
            name,
            size: meta.len(),
            hash,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// BLAKE3 of a file's content, in hex.
pub fn hash_file(path: &Path) -> io::Result<String> {
    let file = fs::File::open(path).map_err(|e| at(path, e))?;
    let mut hasher = blake3::Hasher::new();
    hasher
        .update_reader(io::BufReader::with_capacity(1 << 20, file))
        .map_err(|e| at(path, e))?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// Whether RocksDB never writes to a file of this name once it exists:
/// table and blob files. Those are hard-linked; the others copied.
fn immutable(name: &str) -> bool {
    name.ends_with(".sst") || name.ends_with(".blob")
}

/// Makes `dest` hold the content of `src` (named `name` in its snapshot):
/// a hard link for an immutable file, a synced copy otherwise, so that
/// `dest` never appears half written.
fn place(src: &Path, dest: &Path, name: &str) -> io::Result<()> {
    if immutable(name) {
        match fs::hard_link(src, dest) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(dest).map_err(|e| at(dest, e))?;
                return fs::hard_link(src, dest).map_err(|e| at(dest, e));
            }
            // Another file system: copy.
            Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {}
            Err(e) => return Err(at(dest, e)),
        }
    }
    let mut tmp = dest.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    fs::copy(src, &tmp).map_err(|e| at(src, e))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| at(&tmp, e))?;
    fs::rename(&tmp, dest).map_err(|e| at(dest, e))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| at(dir, e))
}

/// `e`, saying which path it is about.
fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
