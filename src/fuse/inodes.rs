//! The inode table: kernel inode numbers for the root, artifact directories
//! and file contents.
//!
//! Invariants:
//! - A number is never reused while the mount lives.
//! - An artifact directory keeps its number across renames.
//! - A file inode stands for one committed content (one index row), so
//!   its bytes never change and the kernel may keep its pages across opens.
//!   Content replaced through the view gets a new inode; readers of the old
//!   one keep their pages and their own chunk list. A file created through
//!   the view keeps the inode it was created with once committed.

use std::collections::HashMap;

use crate::id::FileHash;

/// One committed content: its index row and whole-file hash (SQLite may
/// reuse a deleted row's id for new content; the pair is never reused for
/// different bytes).
pub type Version = (i64, FileHash);

pub const ROOT: u64 = 1;

/// Attributes of a file as last seen in the index (or while being written).
#[derive(Clone, Copy, Debug, Default)]
pub struct FileInfo {
    pub size: u64,
    pub mode: u32,
    pub mtime_ns: i64,
}

#[derive(Clone, Debug)]
pub enum Node {
    Root,
    Dir {
        name: String,
    },
    File {
        dir: u64,
        name: String,
        /// The index row; None while a created file is being written.
        row: Option<Version>,
        info: FileInfo,
    },
}

pub struct Inodes {
    next: u64,
    nodes: HashMap<u64, Node>,
    dirs: HashMap<String, u64>,
    rows: HashMap<Version, u64>,
}

impl Default for Inodes {
    fn default() -> Self {
        Inodes {
            next: ROOT + 1,
            nodes: HashMap::from([(ROOT, Node::Root)]),
            dirs: HashMap::new(),
            rows: HashMap::new(),
        }
    }
}

impl Inodes {
    fn alloc(&mut self, node: Node) -> u64 {
        let ino = self.next;
        self.next += 1;
        self.nodes.insert(ino, node);
        ino
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        self.nodes.get(&ino)
    }

    /// The inode of artifact `name`, allocated on first sight.
    pub fn dir(&mut self, name: &str) -> u64 {
        if let Some(&ino) = self.dirs.get(name) {
            return ino;
        }
        let ino = self.alloc(Node::Dir {
            name: name.to_owned(),
        });
        self.dirs.insert(name.to_owned(), ino);
        ino
    }

    /// The artifact name of a directory inode.
    pub fn dir_name(&self, ino: u64) -> Option<String> {
        match self.nodes.get(&ino) {
            Some(Node::Dir { name }) => Some(name.clone()),
            _ => None,
        }
    }

    pub fn rename_dir(&mut self, from: &str, to: &str) {
        self.dirs.remove(to);
        if let Some(ino) = self.dirs.remove(from) {
            self.dirs.insert(to.to_owned(), ino);
            self.nodes.insert(
                ino,
                Node::Dir {
                    name: to.to_owned(),
                },
            );
        }
    }

    pub fn forget_dir(&mut self, name: &str) {
        self.dirs.remove(name);
    }

    /// The inode of a committed file content, allocated on first sight;
    /// its name and attributes are refreshed.
    pub fn file(&mut self, dir: u64, row: Version, name: &str, info: FileInfo) -> u64 {
        let node = Node::File {
            dir,
            name: name.to_owned(),
            row: Some(row),
            info,
        };
        match self.rows.get(&row) {
            Some(&ino) => {
                self.nodes.insert(ino, node);
                ino
            }
            None => {
                let ino = self.alloc(node);
                self.rows.insert(row, ino);
                ino
            }
        }
    }

    /// A new inode for a file created through the view, not committed yet.
    pub fn created(&mut self, dir: u64, name: &str, mode: u32, mtime_ns: i64) -> u64 {
        self.alloc(Node::File {
            dir,
            name: name.to_owned(),
            row: None,
            info: FileInfo {
                size: 0,
                mode,
                mtime_ns,
            },
        })
    }

    /// A created file was committed as `row`: it keeps its inode.
    pub fn committed(&mut self, ino: u64, row: Version, dir: u64, name: &str, info: FileInfo) {
        self.rows.insert(row, ino);
        self.nodes.insert(
            ino,
            Node::File {
                dir,
                name: name.to_owned(),
                row: Some(row),
                info,
            },
        );
    }

    /// The inode already given to an index row, if any.
    pub fn of_row(&self, row: Version) -> Option<u64> {
        self.rows.get(&row).copied()
    }

    /// Record new attributes for a file inode (kept for open, unlinked files).
    pub fn set_info(&mut self, ino: u64, new: FileInfo) {
        if let Some(Node::File { info, .. }) = self.nodes.get_mut(&ino) {
            *info = new;
        }
    }

    pub fn set_place(&mut self, ino: u64, new_dir: u64, new_name: &str) {
        if let Some(Node::File { dir, name, .. }) = self.nodes.get_mut(&ino) {
            *dir = new_dir;
            *name = new_name.to_owned();
        }
    }
}
