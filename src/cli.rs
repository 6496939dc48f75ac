//! The command line: every argument, as clap parses it. Kept apart from
//! main.rs because build.rs includes this file too, to generate the man pages
//! and shell completions from the same definitions (so it names nothing of
//! the library but `deploycache::pack::Compression`, which build.rs stands in for).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Content-addressed, deduplicating artifact store with a FUSE view, for CI deploy caches.
///
/// Artifacts are directories of files (normally named by a 40-hex fingerprint).
/// Every file is cut into content-defined chunks and each chunk is kept once.
#[derive(Parser)]
#[command(name = "deploycache", version)]
pub struct Cli {
    /// The store directory. Default: $DEPLOYCACHE_STORE, else /var/lib/deploycache
    /// for root, else $XDG_DATA_HOME/deploycache (~/.local/share/deploycache).
    #[arg(long, global = true, env = "DEPLOYCACHE_STORE", value_name = "DIR")]
    pub store: Option<PathBuf>,

    /// Namespace of artifacts (e.g. one per branch); chunks are shared by all namespaces.
    #[arg(
        long,
        global = true,
        env = "DEPLOYCACHE_NAMESPACE",
        default_value = "",
        value_name = "NS"
    )]
    pub namespace: String,

    /// How new chunks are compressed (put, import, mount): zstd (level 1,
    /// the default), fast (zstd level -3: for hosts short of CPU, about 40%
    /// more bytes on compressible data) or none. Stored chunks keep theirs.
    #[arg(
        long,
        global = true,
        env = "DEPLOYCACHE_COMPRESSION",
        default_value = "zstd",
        value_name = "zstd|fast|none"
    )]
    pub compression: deploycache::pack::Compression,

    /// The shared remote this store caches: s3://BUCKET[/PREFIX] (endpoint,
    /// region and credentials from AWS_ENDPOINT_URL, AWS_REGION,
    /// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or file:///PATH (a
    /// directory, e.g. on an NFS export). Given once, the store remembers it.
    /// Commands that read pull what other hosts published first; commands
    /// that change artifacts publish their change.
    #[arg(long, global = true, env = "DEPLOYCACHE_REMOTE", value_name = "URL")]
    pub remote: Option<String>,

    /// With a remote: bytes of remote packs kept on this host (least
    /// recently used go first). Default 10G.
    #[arg(
        long,
        global = true,
        env = "DEPLOYCACHE_CACHE_SIZE",
        value_name = "SIZE"
    )]
    pub cache_size: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// `deploycache remote …`.
#[derive(Subcommand)]
pub enum RemoteCommand {
    /// Publish this store's artifacts to the remote: the packs it lacks,
    /// then one commit object per artifact version (also how a local-only
    /// store moves to a remote).
    Push {
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply what other hosts published to this store's index.
    Pull {
        /// Print what was done as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show which host owns the remote's gc (the one host whose `gc` acts
    /// on the remote), or make this host the owner.
    GcOwner {
        /// Make this host the owner (only one host may run the remote's gc:
        /// take ownership on one host, and run `gc` there).
        #[arg(long)]
        take: bool,
        /// With --take: the grace period between marking what is dead and
        /// deleting it (default: the current one, else 24h). Longer than any
        /// write may pause: a writer rechecks after half of it.
        #[arg(long, value_name = "DURATION", requires = "take")]
        grace: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum Command {
    /// Create an empty store (put and import also create one when missing).
    Init,
    /// Publish to, or pull from, the store's remote (--remote).
    Remote {
        #[command(subcommand)]
        action: RemoteCommand,
    },
    /// Store files as artifact NAME (a directory's files when PATH is a
    /// directory, which must hold regular files only); replaces an earlier
    /// NAME atomically.
    Put {
        /// Artifact name: any valid file name, normally a 40-hex fingerprint.
        name: String,
        /// Files, or directories of regular files (anything else in them is an error).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Read every file, even one unchanged since an earlier put (same path,
        /// inode, size, mtime and ctime), instead of reusing its stored chunk list.
        #[arg(long)]
        no_files_cache: bool,
    },
    /// Adopt a plain cache: each DIR/<name>/ holding files becomes artifact <name>.
    /// Idempotent and resumable: artifacts already stored are skipped. A .tar/.gz
    /// found cut short is quarantined, leaving its artifact incomplete.
    Import {
        /// The plain cache directory (e.g. /iso_mount/opnfv_ci/master/deploy-cache).
        dir: PathBuf,
    },
    /// Write an artifact's files into DEST, byte-identical, with mode and mtime.
    Export {
        /// Artifact name.
        name: String,
        /// Destination directory (created if missing).
        dest: PathBuf,
    },
    /// Write files' bytes to stdout, one after another.
    Cat {
        /// Artifact name.
        name: String,
        /// File names inside the artifact. All are opened before the first
        /// byte is written, so a missing name writes nothing.
        #[arg(required = true)]
        files: Vec<String>,
    },
    /// Store gzip files in the gzip form: their inflated content (which
    /// dedupes against other versions) plus the side data that rebuilds
    /// their exact bytes. Each file is checked by rebuilding it from what
    /// was stored before it switches; one that does not rebuild stays as
    /// it is, and is not tried again. Reads return the same bytes. A mount
    /// does this in the background unless started with --no-convert.
    Convert {
        /// Artifacts whose files to convert.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        names: Vec<String>,
        /// Every artifact of the namespace.
        #[arg(long)]
        all: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List artifacts, or the files of one artifact.
    Ls {
        /// Show this artifact's files instead of all artifacts.
        name: Option<String>,
        /// List files kept aside because their content was incomplete (cut-short transfers).
        #[arg(long, conflicts_with = "name")]
        quarantine: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Drop an artifact. Its unshared chunks become reclaimable (see `stats`); the next `gc` returns their space to the filesystem.
    Rm {
        /// Artifact name (with --quarantine: only this artifact's quarantined files).
        #[arg(required_unless_present = "quarantine")]
        name: Option<String>,
        /// Drop quarantined files (cut-short transfers, see `ls --quarantine`)
        /// instead of an artifact: those of NAME, or all of the namespace's;
        /// an artifact still incomplete without them goes too.
        #[arg(long)]
        quarantine: bool,
    },
    /// Store totals and the dedupe achieved; with a gc policy, what it would free.
    Stats {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also break the figures down by namespace.
        #[arg(long, value_name = "namespace")]
        by: Option<StatsBy>,
        #[command(flatten)]
        policy: GcPolicy,
    },
    /// Evict whole artifacts, least recently used first, by the limits given
    /// (an artifact goes when any limit says so, unless --keep-last holds it
    /// or a file of it is being written through a mount), and drop
    /// quarantined files kept aside longer than a day (or --older-than),
    /// with any artifact incomplete without them. Plans first: --dry-run
    /// prints the plan. Then it returns unreferenced space to the
    /// filesystem: packs at least half dead are rewritten, packs with
    /// nothing live unlinked; safe while the store is mounted.
    Gc {
        #[command(flatten)]
        policy: GcPolicy,
        /// Print the plan (what goes, why, what each frees) and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the plan and the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the index; exits 3 naming every problem found (a missing,
    /// empty or unreadable index among them).
    Verify {
        /// Also re-read, decompress and re-hash every record of every pack
        /// (chunks and manifest records, indexed or not).
        #[arg(long)]
        full: bool,
        /// First rebuild the index from the packs' records (after a lost or
        /// emptied index.sqlite; the old one is kept beside it). Needs the
        /// store to itself: stop mounts and puts first.
        #[arg(long)]
        rebuild_index: bool,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Serve the namespace's artifacts as a directory: one subdirectory per
    /// artifact. Reads come from the store; files written (scp, cp) are stored
    /// when closed; cut-short .tar/.gz files are quarantined, and their artifact
    /// lists as empty until they are written whole. Runs in the foreground until
    /// unmounted or sent SIGINT/SIGTERM.
    #[command(after_long_help = MOUNT_HELPER)]
    Mount {
        /// The directory to mount over.
        mountpoint: PathBuf,
        /// Run in the background; return once the mount serves. Logs to
        /// --log (default <store>/mount.log).
        #[arg(long)]
        daemon: bool,
        /// Refuse every change through the mount.
        #[arg(long)]
        read_only: bool,
        /// Let every user use the mount (default: only the mounting user;
        /// needs user_allow_other in /etc/fuse.conf for non-root users).
        #[arg(long)]
        allow_other: bool,
        /// Threads handling requests.
        #[arg(long, default_value_t = 4, value_name = "N")]
        threads: usize,
        /// First import the plain cache already in MOUNTPOINT (each
        /// MOUNTPOINT/<name>/ of files becomes artifact <name>), then mount
        /// over it; the plain files stay underneath, untouched.
        #[arg(long)]
        adopt: bool,
        /// Log file of --daemon. Default: <store>/mount.log
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
        /// List an artifact only once one of its files matching PATTERN (a
        /// glob over file names, e.g. `opnfv-bootstraps-cache.tar` or
        /// `env_*.yaml`) is written whole and no file of it is being
        /// written: closes the window between two separate copies of one
        /// fill, in which the first files alone would pass the hit test.
        /// Repeat it for more patterns.
        #[arg(long, value_name = "PATTERN")]
        complete_when: Vec<String>,
        /// Leave gzip files as they are: no background conversion to the
        /// gzip form (see `convert`).
        #[arg(long)]
        no_convert: bool,
        #[command(flatten)]
        gc: MountGc,
    },
    /// Unmount a deploycache mount.
    Umount {
        /// The mounted directory.
        mountpoint: PathBuf,
        /// Detach it now even while files are open there; it goes away once
        /// the last one is closed
        #[arg(long)]
        lazy: bool,
    },
    /// Compute the legacy deploy-cache fingerprints (mirrors, bootstraps, targetimages).
    Fingerprint {
        /// Root of the unpacked ISO: its Release files make the mirrors fingerprint
        /// (directories whose path, as given, contains "binary" are skipped) and
        /// opnfv/fuel_bootstrap_cli.yaml the bootstraps fingerprint.
        #[arg(long)]
        iso_root: PathBuf,
        /// The DEA file; settings.editable.provision.packages and
        /// settings.editable.repo_setup.repos make the targetimages fingerprint.
        #[arg(long)]
        dea: PathBuf,
        /// Where to write deploy_cache_fingerprints.yaml (only when all three
        /// fingerprints succeed; replaced atomically).
        #[arg(long, default_value = "deploy_cache_fingerprints.yaml")]
        output: PathBuf,
        /// Print mirrors, bootstraps, targetimages, bootstraps_key and
        /// targetimages_key as one JSON object instead of the two keys.
        #[arg(long)]
        json: bool,
        /// Walk siblings in raw byte order instead of the OS listing order, for
        /// results that do not depend on the filesystem (the original used the
        /// OS order).
        #[arg(long)]
        sorted: bool,
    },
}

/// `stats --by`: how to break the figures down.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum StatsBy {
    Namespace,
}

/// gc's limits (`gc`, and `stats` to show what they would free).
#[derive(clap::Args, Clone, Debug)]
pub struct GcPolicy {
    /// Evict least recently used artifacts until the store's bytes on disk
    /// (packs + index, once freed space is reclaimed) are at or under SIZE:
    /// bytes, or with a unit (500G, 1.5TiB; K, M, G, T are powers of 1024).
    #[arg(long, value_name = "SIZE")]
    pub max_size: Option<String>,
    /// Evict artifacts not used for DURATION (12h, 7d; a use is a lookup or
    /// listing of the artifact's directory through a mount, opening a file
    /// of it, cat, export); quarantined files kept aside that long go too
    /// (default: a day).
    #[arg(long, value_name = "DURATION")]
    pub older_than: Option<String>,
    /// Keep the N most recently used artifacts of each namespace, whatever
    /// the other limits say.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Consider the artifacts of every namespace (default: those of --namespace).
    #[arg(long)]
    pub all_namespaces: bool,
    /// Drop the hot copy (the gzip bytes kept beside the gzip form, so that
    /// reads need no rebuild) of files of artifacts not used for DURATION
    /// (default: a day). Under --max-size, hot copies go, least recently
    /// used first, before any artifact is evicted.
    #[arg(long, value_name = "DURATION")]
    pub hot_for: Option<String>,
}

/// The mount's own gc (`mount --gc-max-size …`): the limits of `gc`, kept
/// by the mount in a background thread, for the mount's namespace.
#[derive(clap::Args, Clone, Debug)]
#[command(next_help_heading = "gc (the mount keeps the store within these by itself)")]
pub struct MountGc {
    /// Run gc at start, every --gc-interval and soon after commits through
    /// the mount grow the store past SIZE, evicting least recently used
    /// artifacts of the namespace until the store is at or under SIZE
    /// (500G, 1.5TiB), as `gc --max-size` does.
    #[arg(long, value_name = "SIZE")]
    pub gc_max_size: Option<String>,
    /// Run gc at start and every --gc-interval, evicting artifacts not used
    /// for DURATION (12h, 7d), as `gc --older-than` does.
    #[arg(long, value_name = "DURATION")]
    pub gc_older_than: Option<String>,
    /// The mount's gc keeps the N most recently used artifacts, as `gc
    /// --keep-last` does.
    #[arg(long, value_name = "N")]
    pub gc_keep_last: Option<usize>,
    /// How often the mount's gc runs (with --gc-max-size, --gc-older-than
    /// or --gc-keep-last). Default: 10m
    #[arg(long, value_name = "DURATION")]
    pub gc_interval: Option<String>,
}

/// `deploycache mount --help` and its man page: the mount(8) form.
const MOUNT_HELPER: &str = "\
From /etc/fstab or mount(8): the package links /sbin/mount.fuse.deploycache to \
deploycache, so

    mount -t fuse.deploycache STORE MOUNTPOINT -o namespace=master,allow_other

mounts as `deploycache --store STORE --namespace master mount --daemon \
--allow-other MOUNTPOINT` does, and returns once the mount serves. An fstab \
line mounts it at boot (x-systemd.requires-mounts-for names the store's NFS \
mount):

    /iso_mount/opnfv_ci/deploycache-store /iso_mount/opnfv_ci/master/deploy-cache \
fuse.deploycache namespace=master,allow_other,_netdev,x-systemd.requires-mounts-for=/iso_mount/opnfv_ci 0 0

Options (-o): ro (--read-only), rw, allow_other, namespace=NS, \
compression=zstd|fast|none, threads=N, adopt, log=FILE, complete_when=PATTERN, \
gc_max_size=SIZE, gc_older_than=DURATION, gc_keep_last=N, gc_interval=DURATION; defaults, auto, noauto, \
_netdev, nofail, nosuid, nodev, async, relatime, comment=… and x-… are left to \
mount(8) and systemd. Another option is an error (ignored with mount -s). \
Without namespace= the mount serves the default namespace. Unmount with \
umount MOUNTPOINT or deploycache umount MOUNTPOINT.";
