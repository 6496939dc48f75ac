#!/usr/bin/env bash
# Build the benchmark corpus: versions of a deploy-cache artifact directory.
#
#   scripts/bench/corpus.sh OUT_DIR [--scale S] [--versions N]
#
# OUT_DIR/v1/ and OUT_DIR/v2/ each hold what one CI fingerprint directory holds:
#   opnfv-bootstraps-cache.tar          tar of <uuid>/{root.squashfs,vmlinuz,initrd.img,metadata.yaml}
#   env_1_ubuntu_1404_amd64.img.gz      gzip'd ext4 image of the same root
#   env_1_ubuntu_1404_amd64-boot.img.gz gzip'd small ext4 boot image (kernel, initrd, grub)
#   env_1_ubuntu_1404_amd64.yaml, id_rsa, id_rsa.pub
# OUT_DIR/v1-raw/ and OUT_DIR/v2-raw/ hold the ext4 image uncompressed
# (env_1_ubuntu_1404_amd64.img), since gzip hides the similarity between versions.
# v2 is v1 after a package update (scripts/bench/rootfs.py says what changes).
# --versions N (default 2, at least 2) builds v1..vN the same way: each is the
# one before plus another small package update (v3 = v2 + update 3, ...); v1
# and v2 are the same bytes whatever N is (the gzip dedupe work measures N = 5).
#
# Deterministic: the same bytes on every run and machine with the same tool
# versions (Debian 12: squashfs-tools 4.5.1, e2fsprogs 1.47.0, gzip 1.12, tar 1.34).
# Every timestamp is fixed, every tool gets fixed seeds/UUIDs, and the ext4
# images are populated by debugfs in sorted order, because `mkfs.ext4 -d`
# allocates inodes in the source file system's readdir order, which differs
# between file systems (verified: ext4 vs tmpfs source trees gave different images).
# OUT_DIR/MANIFEST lists size and sha256 of every file, to compare runs.
#
# Default scale: tar ~300 MB, ext4 raw 512 MiB (gz ~200 MB), boot image gz ~30 MB.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOTFS="$HERE/rootfs.py"
EPOCH=1500000000            # all artifact timestamps (2017-07-14)
EXT4_UUID=6b1fa7b9-7f43-4c53-9d6a-2f0bfc0f4a11
EXT4_HASH_SEED=0d1f1a5c-2b7e-4f6c-8a43-9a6c3f1e2d44
BOOT_UUID=2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f

usage() { echo "usage: $0 OUT_DIR [--scale S] [--versions N]" >&2; exit 2; }

log() { printf '[corpus %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# Install what building needs, only when missing (Debian names).
ensure_tools() {
    local missing=()
    command -v mksquashfs >/dev/null || missing+=(squashfs-tools)
    command -v mkfs.ext4 >/dev/null || missing+=(e2fsprogs)
    command -v debugfs >/dev/null || missing+=(e2fsprogs)
    command -v python3 >/dev/null || missing+=(python3)
    command -v gzip >/dev/null || missing+=(gzip)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# scaled BYTES: BYTES * SCALE as an integer (awk: bash has no floats).
scaled() { awk -v b="$1" -v s="$SCALE" 'BEGIN { printf "%d", b * s }'; }

# mib_at_least BYTES MIN_MIB: BYTES rounded up to whole MiB, at least MIN_MIB.
mib_at_least() {
    awk -v b="$1" -v m="$2" 'BEGIN { x = int((b + 1048575) / 1048576); if (x < m) x = m; print x }'
}

# mke2fs.conf of our own: the machine's /etc/mke2fs.conf varies between
# releases, and the feature set is part of the bytes. These are Ubuntu 14.04's
# ext4 defaults (no metadata_csum, no 64bit), the era of the real images.
write_mke2fs_conf() {
    cat >"$1" <<'EOF'
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,ext_attr,dir_index
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,dir_nlink,extra_isize
	}
	small = {
		inode_ratio = 16384
	}
	floppy = {
		inode_ratio = 16384
	}
EOF
}

# debugfs_script SRC: commands that recreate SRC in sorted path order with its
# modes and mtimes. Paths hold no spaces (the generator's names never do).
debugfs_script() {
    local src
    src=$(realpath "$1")
    (cd "$src" && find . -mindepth 1 -printf '%y %P %m %Ts\n' | LC_ALL=C sort -k2,2) |
        awk -v src="$src" '{
            n = split($2, part, "/"); dir = "/"
            for (i = 1; i < n; i++) dir = dir part[i] "/"
            print "cd " dir
            if ($1 == "d") { print "mkdir " part[n]; type = "040" }
            else { print "write " src "/" $2 " " part[n]; type = "0100" }
            print "sif " part[n] " mode " type $3
            print "sif " part[n] " mtime @" $4
            print "sif " part[n] " atime @" $4
            print "sif " part[n] " ctime @" $4
        }'
}

# make_ext4 SRC IMAGE SIZE_MIB LABEL UUID: a deterministic ext4 image of SRC.
make_ext4() {
    local src=$1 img=$2 mib=$3 label=$4 uuid=$5
    rm -f "$img"
    truncate -s "${mib}M" "$img"
    E2FSPROGS_FAKE_TIME=$EPOCH MKE2FS_CONFIG="$WORK/mke2fs.conf" \
        mkfs.ext4 -q -F -t ext4 -U "$uuid" -E "hash_seed=$EXT4_HASH_SEED,root_owner=0:0" \
        -L "$label" "$img"
    debugfs_script "$src" >"$WORK/debugfs.cmds"
    # debugfs reports errors on stderr but exits 0: treat any "error"/"No space" line as fatal.
    E2FSPROGS_FAKE_TIME=$EPOCH debugfs -w -f "$WORK/debugfs.cmds" "$img" >"$WORK/debugfs.log" 2>&1
    if grep -Ei 'error|no space|not found|could not' "$WORK/debugfs.log" >&2; then
        echo "corpus.sh: debugfs failed populating $img (see above)" >&2
        exit 1
    fi
    e2fsck -fn "$img" >/dev/null 2>&1 || { echo "corpus.sh: e2fsck found problems in $img" >&2; exit 1; }
}

# deterministic tar of DIR's contents into FILE.
make_tar() {
    tar --sort=name --mtime="@$EPOCH" --owner=0 --group=0 --numeric-owner \
        --format=gnu -C "$1" -cf "$2" .
}

build_version() {
    local v=$1 out="$OUT/v$1" raw="$OUT/v$1-raw" root="$WORK/root-v$1"
    local boot_uuid="$BOOT_UUID" bs="$WORK/bootstrap-v$1"
    # A new bootstrap build gets a new uuid directory inside the tar, as in Fuel.
    local bs_uuid
    bs_uuid=$(printf '%08x-1111-4222-8333-%012x' "$v" "$v")
    mkdir -p "$out" "$raw" "$bs/$bs_uuid" "$WORK/bootimg-v$v/grub/x86_64-efi"

    log "v$v: generating root file system"
    python3 "$ROOTFS" root "$root" --version "$v" --scale "$SCALE" >"$OUT/v$v.summary.json"

    log "v$v: kernel, initrd"
    # Same kernel in every version; the initrd is regenerated on each update
    # because it carries files of package 0, which every update changes.
    python3 "$ROOTFS" blob "$WORK/vmlinuz" --size "$(scaled 7000000)" --seed 4044 --kind data
    python3 "$ROOTFS" cpio "$root" "$WORK/initrd-v$v.cpio" lib/modules usr/bin/pkg00000 \
        usr/lib/x86_64-linux-gnu/libpkg00000 usr/share/pkg00000
    gzip -n -c "$WORK/initrd-v$v.cpio" >"$bs/$bs_uuid/initrd.img"
    rm "$WORK/initrd-v$v.cpio"
    cp "$WORK/vmlinuz" "$bs/$bs_uuid/vmlinuz"

    log "v$v: squashfs"
    mksquashfs "$root" "$bs/$bs_uuid/root.squashfs" -comp gzip -noappend -no-xattrs \
        -all-root -mkfs-time "$EPOCH" -all-time "$EPOCH" -no-progress -quiet >/dev/null
    {
        echo "uuid: $bs_uuid"
        echo "label: $bs_uuid"
        echo "extend_kopts: biosdevname=0 net.ifnames=1"
        echo "os: ubuntu"
        echo "modules:"
        for m in vmlinuz initrd.img root.squashfs; do
            echo "  $m:"
            echo "    uri: http://127.0.0.1:8080/bootstraps/$bs_uuid/$m"
            echo "    raw_md5: $(md5sum <"$bs/$bs_uuid/$m" | cut -d' ' -f1)"
        done
    } >"$bs/$bs_uuid/metadata.yaml"
    find "$bs" -exec touch -h -d "@$EPOCH" {} +
    make_tar "$bs" "$out/opnfv-bootstraps-cache.tar"
    rm -rf "$bs"

    log "v$v: ext4 image (${EXT4_MIB} MiB)"
    make_ext4 "$root" "$raw/env_1_ubuntu_1404_amd64.img" "$EXT4_MIB" cloudimg-rootfs "$EXT4_UUID"
    gzip -n -c "$raw/env_1_ubuntu_1404_amd64.img" >"$out/env_1_ubuntu_1404_amd64.img.gz"
    rm -rf "$root"

    log "v$v: boot image (${BOOT_MIB} MiB)"
    local bootdir="$WORK/bootimg-v$v"
    cp "$WORK/vmlinuz" "$bootdir/vmlinuz-4.4.0-98-generic"
    tar -xOf "$out/opnfv-bootstraps-cache.tar" "./$bs_uuid/initrd.img" >"$bootdir/initrd.img-4.4.0-98-generic"
    python3 "$ROOTFS" blob "$bootdir/grub/x86_64-efi/normal.mod" --size "$(scaled 2000000)" \
        --seed 77 --kind elf
    printf 'set default=0\nset timeout=0\nmenuentry "Ubuntu" {\n  linux /vmlinuz-4.4.0-98-generic root=LABEL=cloudimg-rootfs ro\n  initrd /initrd.img-4.4.0-98-generic\n}\n' \
        >"$bootdir/grub/grub.cfg"
    find "$bootdir" -exec touch -h -d "@$EPOCH" {} +
    make_ext4 "$bootdir" "$WORK/boot-v$v.img" "$BOOT_MIB" cloudimg-boot "$boot_uuid"
    gzip -n -c "$WORK/boot-v$v.img" >"$out/env_1_ubuntu_1404_amd64-boot.img.gz"
    rm -rf "$bootdir" "$WORK/boot-v$v.img"

    log "v$v: yaml, keys"
    {
        echo "name: env_1_ubuntu_1404_amd64"
        echo "version: $v"
        echo "images:"
        for f in env_1_ubuntu_1404_amd64.img.gz env_1_ubuntu_1404_amd64-boot.img.gz; do
            echo "  - name: $f"
            echo "    format: ext4"
            echo "    container: gzip"
            echo "    size: $(stat -c %s "$out/$f")"
            echo "    md5: $(md5sum <"$out/$f" | cut -d' ' -f1)"
        done
    } >"$out/env_1_ubuntu_1404_amd64.yaml"
    # The fuel master's key pair is the same in both versions.
    python3 "$ROOTFS" key "$out/id_rsa" --seed 1404
    touch -d "@$EPOCH" "$out"/* "$raw"/*
}

main() {
    (($# >= 1)) || usage
    OUT=$1
    shift
    SCALE=1
    VERSIONS=2
    while (($#)); do
        case $1 in
        --scale) SCALE=${2:?--scale needs a value}; shift 2 ;;
        --versions) VERSIONS=${2:?--versions needs a value}; shift 2 ;;
        *) usage ;;
        esac
    done
    awk -v s="$SCALE" 'BEGIN { exit !(s > 0) }' || { echo "corpus.sh: bad --scale $SCALE" >&2; exit 2; }
    [[ $VERSIONS =~ ^[0-9]+$ ]] && ((VERSIONS >= 2)) ||
        { echo "corpus.sh: bad --versions $VERSIONS (a whole number, at least 2)" >&2; exit 2; }
    ensure_tools
    # Ext4 image: 512 MiB at scale 1 (the root is ~400 MB). Never under 32 MiB:
    # below that the journal and inode tables would crowd out a tiny root.
    EXT4_MIB=$(mib_at_least "$(scaled 536870912)" 32)
    BOOT_MIB=$(mib_at_least "$(scaled 50331648)" 8)
    mkdir -p "$OUT"
    OUT=$(realpath "$OUT")
    local v dirs=()
    for ((v = 1; v <= VERSIONS; v++)); do dirs+=("v$v" "v$v-raw"); done
    (cd "$OUT" && rm -rf "${dirs[@]}" .work)
    WORK="$OUT/.work"
    mkdir -p "$WORK"
    write_mke2fs_conf "$WORK/mke2fs.conf"
    for ((v = 1; v <= VERSIONS; v++)); do build_version "$v"; done
    rm -rf "$WORK"
    # Sorted by path, so for N = 2 the MANIFEST is the one two-version runs wrote.
    (cd "$OUT" && find "${dirs[@]}" -type f -printf '%s %p\n' | LC_ALL=C sort -k2 |
        while read -r size path; do
            printf '%s %12d %s\n' "$(sha256sum <"$path" | cut -d' ' -f1)" "$size" "$path"
        done) >"$OUT/MANIFEST"
    echo "scale $SCALE" >>"$OUT/MANIFEST"
    ((VERSIONS == 2)) || echo "versions $VERSIONS" >>"$OUT/MANIFEST"
    log "done: $OUT"
    cat "$OUT/MANIFEST" >&2
}

main "$@"
