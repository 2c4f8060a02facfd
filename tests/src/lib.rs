//! Fixtures for the end-to-end tests: the built `dmarec` and `dmaplay`
//! binaries, scratch directories and loop devices that are always removed,
//! also when a test fails (they clean up in `Drop`, which runs on panic).
//!
//! Tests that need root (loop devices, mounts) call [`require_root`] and are
//! skipped with a loud message when not root; CI runs as root.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

/// Path of a binary of this workspace, built in the same profile as the tests.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary> -> target/<profile>/<name>
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built: run `cargo build --workspace` (the test command does)",
        p.display()
    );
    p
}

/// Runs `bin` with `args`, returning its output (never panics on exit status).
pub fn run(bin_name: &str, args: &[&str]) -> Output {
    Command::new(bin(bin_name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {bin_name}: {e}"))
}

/// Runs and requires success, returning stdout.
pub fn run_ok(bin_name: &str, args: &[&str]) -> String {
    let out = run(bin_name, args);
    assert!(
        out.status.success(),
        "{bin_name} {} failed with {}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Returns false (and says so) when the test cannot run without root.
pub fn require_root(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {test}: needs root for loop devices (CI runs as root)");
    }
    is_root()
}

/// A scratch directory removed on drop.
pub struct Scratch {
    pub path: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let base = std::env::var_os("DMAREC_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let path = base.join(format!(
            "dmarec-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Scratch { path }
    }
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
    pub fn file(&self, name: &str) -> String {
        self.join(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A loop device over a sparse backing file; detached and deleted on drop.
pub struct LoopDevice {
    pub device: String,
    pub backing: PathBuf,
}

impl LoopDevice {
    /// Creates a `size_bytes` sparse file in `dir` and attaches it with direct I/O.
    pub fn new(dir: &Path, name: &str, size_bytes: u64) -> Result<LoopDevice> {
        let backing = dir.join(name);
        let f = std::fs::File::create(&backing)
            .with_context(|| format!("create {}", backing.display()))?;
        f.set_len(size_bytes)?;
        drop(f);
        Self::attach(backing)
    }

    /// Attaches an existing backing file.
    pub fn attach(backing: PathBuf) -> Result<LoopDevice> {
        let out = Command::new("losetup")
            .args(["-f", "--show", "--direct-io=on"])
            .arg(&backing)
            .output()
            .context("run losetup")?;
        if !out.status.success() {
            bail!(
                "losetup {}: {}",
                backing.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let device = String::from_utf8(out.stdout)?.trim().to_string();
        Ok(LoopDevice { device, backing })
    }

    /// Reads the whole device content. It waits until no one holds the
    /// device exclusively (a killed recorder's io_uring is torn down
    /// asynchronously and its last writes land after the process is gone),
    /// then reads the backing file with O_DIRECT: a buffered read could
    /// return page-cache data older than the loop device's direct writes.
    pub fn read_backing(&self) -> Vec<u8> {
        wait_unclaimed(&self.device);
        read_direct(&self.backing)
    }
}

impl LoopDevice {
    /// Whether the device is still bound to our backing file. A test may
    /// detach it itself; the kernel can then give the same /dev/loopN to
    /// another test running in parallel, which we must not detach.
    fn still_ours(&self) -> bool {
        let name = self.device.trim_start_matches("/dev/");
        let Ok(bound) = std::fs::read_to_string(format!("/sys/block/{name}/loop/backing_file"))
        else {
            return false;
        };
        let bound = bound.trim().trim_end_matches(" (deleted)");
        let ours = std::fs::canonicalize(&self.backing).unwrap_or_else(|_| self.backing.clone());
        Path::new(bound) == ours || Path::new(bound) == self.backing
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // Retry: a just-closed device can be briefly busy.
        for _ in 0..50 {
            if !self.still_ours() {
                break;
            }
            let ok = Command::new("losetup")
                .arg("-d")
                .arg(&self.device)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = std::fs::remove_file(&self.backing);
    }
}

/// Waits (at most 10 s) until `device` can be opened O_EXCL: after umount,
/// or after a recorder's exit, the kernel releases its claim a moment later.
pub fn wait_unclaimed(device: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    for _ in 0..100 {
        if std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_EXCL)
            .open(device)
            .is_ok()
        {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("{device} still claimed after 10 s");
}

/// Reads a whole file with O_DIRECT (bypassing the page cache).
pub fn read_direct(path: &Path) -> Vec<u8> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    const CHUNK: usize = 1 << 20;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .expect("open O_DIRECT");
    let layout = std::alloc::Layout::from_size_align(CHUNK, 4096).unwrap();
    // SAFETY: non-zero size; freed below.
    let buf = unsafe { std::alloc::alloc(layout) };
    let mut out = Vec::new();
    loop {
        // SAFETY: buf is valid for CHUNK bytes.
        let chunk = unsafe { std::slice::from_raw_parts_mut(buf, CHUNK) };
        let n = f.read(chunk).expect("O_DIRECT read");
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    // SAFETY: allocated above with this layout.
    unsafe { std::alloc::dealloc(buf, layout) };
    out
}

/// Parses the JSON a command printed with `--json`.
pub fn json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// Runs `dmaplay args` with `--json` (and `--quiet`, but for `list`, which
/// shows no progress), requires success and returns the report.
pub fn dmaplay_json(args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.push("--json");
    if args.first() != Some(&"list") {
        all.push("--quiet");
    }
    json(&run_ok("dmaplay", &all))
}

/// A JSON file (a SigMF meta file, a report), parsed.
pub fn read_json(path: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {text}"))
}

/// Every entry of the index file `index`, each entry's CRC checked.
pub fn index_entries(index: &str) -> Vec<formats::IndexEntry> {
    let bytes = std::fs::read(index).unwrap_or_else(|e| panic!("reading {index}: {e}"));
    let view = formats::index::IndexView::new(&bytes).expect("index decodes");
    (0..view.len())
        .map(|i| view.get(i).expect("index entry CRC"))
        .collect()
}

/// The layout of the scan an index belongs to, read from member 0's bytes
/// independently of dmaplay: the whole set for a 1.0 set, else the region of
/// the index's scan in the newest valid scan table copy.
pub fn scan_layout(member0: &[u8], header: &formats::IndexHeader) -> formats::Layout {
    use formats::scan::{choose_table, copy_offset_bytes, SCAN_TABLE_COPY_BYTES};
    let sb = &header.superblock;
    let set = formats::Layout::from_superblock(sb);
    if !sb.has_scan_table() {
        return set;
    }
    let copies = (0..2).map(|c| {
        let at = copy_offset_bytes(c) as usize;
        (
            format!("copy {c}"),
            &member0[at..at + SCAN_TABLE_COPY_BYTES],
        )
    });
    let table = choose_table(sb.recording_uuid, copies)
        .table
        .expect("a valid scan table copy");
    let scan = table
        .scans
        .iter()
        .find(|s| s.uuid == header.scan_uuid)
        .expect("the index's scan is in the table");
    set.region(
        scan.first_slot,
        scan.region_slots(set.set_capacity_slots()),
        scan.ring(),
    )
}

/// What [`check_recording`] found.
#[derive(Debug, Default)]
pub struct Checked {
    pub slots: u64,
    pub lost_buffers: u64,
    pub first_slot: u64,
    pub last_slot: u64,
}

/// Checks a finished recording independently of dmaplay: every index entry
/// points at a slot of this recording at the place the layout says, whose
/// header matches the entry, whose payload CRC and simulated-card pattern
/// are right; slot numbers are contiguous; card sequence numbers advance by
/// 1 + gap_count. `devices` are the members' bytes in member order.
pub fn check_recording(devices: &[Vec<u8>], index: &[u8]) -> Checked {
    use formats::{index::IndexView, SlotHeader, Superblock, SLOT_HEADER_BYTES};
    let view = IndexView::new(index).expect("index decodes");
    assert_eq!(
        view.torn_tail_bytes, 0,
        "finished recording has a torn index tail"
    );
    let sb0 = &view.header.superblock;
    for (i, dev) in devices.iter().enumerate() {
        let sb = Superblock::decode(dev).expect("primary superblock");
        assert_eq!(sb.device_index as usize, i);
        assert_eq!(sb.recording_uuid, sb0.recording_uuid);
        let backup =
            Superblock::decode(&dev[Superblock::backup_offset(dev.len() as u64) as usize..])
                .expect("backup superblock");
        assert_eq!(backup, sb, "backup superblock differs from primary");
    }
    let layout = scan_layout(&devices[0], &view.header);
    let slots_uuid = view.header.slots_uuid();
    let payload = sb0.payload_bytes as usize;
    let mut c = Checked::default();
    let mut prev: Option<formats::IndexEntry> = None;
    let n = view.len();
    // In ring mode only the last `capacity` entries are still on the devices.
    let live_from = n.saturating_sub(layout.capacity_slots() as usize);
    for i in 0..n {
        let e = view.get(i).expect("index entry CRC");
        if let Some(p) = prev {
            assert_eq!(
                e.slot_seq,
                p.slot_seq + 1,
                "index slot numbers not contiguous"
            );
            assert_eq!(
                e.card_seq,
                p.card_seq + 1 + e.gap_count,
                "card_seq jump disagrees with gap_count at slot {}",
                e.slot_seq
            );
            assert!(
                e.card_timestamp_ns >= p.card_timestamp_ns,
                "card time went backwards at slot {}",
                e.slot_seq
            );
        } else {
            c.first_slot = e.slot_seq;
        }
        c.lost_buffers += e.gap_count;
        prev = Some(e);
        if i < live_from {
            continue;
        }
        let loc = layout.locate(e.slot_seq).expect("slot fits the layout");
        assert_eq!(
            (loc.device_index as u8, loc.offset_bytes),
            (e.device_index, e.device_offset_bytes),
            "slot {} misplaced",
            e.slot_seq
        );
        let dev = &devices[loc.device_index];
        let at = loc.offset_bytes as usize;
        let h = SlotHeader::decode(&dev[at..at + SLOT_HEADER_BYTES])
            .unwrap_or_else(|err| panic!("slot {}: {err}", e.slot_seq));
        assert_eq!(
            formats::IndexEntry::from_header(&h, loc.offset_bytes),
            e,
            "index entry differs from slot header"
        );
        assert_eq!(
            h.recording_uuid, slots_uuid,
            "slot {} of another scan",
            e.slot_seq
        );
        let body = &dev[at + SLOT_HEADER_BYTES..at + SLOT_HEADER_BYTES + payload];
        h.check_payload(body)
            .unwrap_or_else(|err| panic!("slot {}: {err}", e.slot_seq));
        assert_eq!(
            formats::pattern::first_mismatch(
                &body[..h.payload_bytes_used as usize],
                h.channel,
                h.card_seq
            ),
            None,
            "slot {} pattern",
            e.slot_seq
        );
        assert_eq!(
            h.channel,
            formats::ChannelLayout::of(sb0).slot_channel(h.card_seq),
            "channel layout"
        );
        c.slots += 1;
    }
    c.last_slot = prev.map(|p| p.slot_seq).unwrap_or(0);
    c
}

/// A write-bandwidth limit on a block device (cgroup v1 blkio throttle, or
/// cgroup v2 io.max), for a target slower than the card. Removed on drop.
pub struct Throttle {
    cgroup: PathBuf,
}

impl Throttle {
    pub fn new(device: &str, write_bytes_per_s: u64) -> Result<Throttle> {
        let out = Command::new("lsblk")
            .args(["-dno", "MAJ:MIN", device])
            .output()?;
        let majmin = String::from_utf8(out.stdout)?.trim().to_string();
        let name = format!(
            "dmarec-test-{}-{}",
            std::process::id(),
            majmin.replace(':', "-")
        );
        let v1 = Path::new("/sys/fs/cgroup/blkio");
        let v2 = Path::new("/sys/fs/cgroup");
        if v1.join("blkio.throttle.write_bps_device").exists() || v1.join("cgroup.procs").exists() {
            let cg = v1.join(&name);
            std::fs::create_dir_all(&cg)?;
            std::fs::write(
                cg.join("blkio.throttle.write_bps_device"),
                format!("{majmin} {write_bytes_per_s}"),
            )?;
            return Ok(Throttle { cgroup: cg });
        }
        if v2.join("cgroup.controllers").exists() {
            std::fs::write(v2.join("cgroup.subtree_control"), "+io")?;
            let cg = v2.join(&name);
            std::fs::create_dir_all(&cg)?;
            std::fs::write(
                cg.join("io.max"),
                format!("{majmin} wbps={write_bytes_per_s}"),
            )?;
            return Ok(Throttle { cgroup: cg });
        }
        bail!("no blkio (cgroup v1) or io (cgroup v2) controller to throttle {device}")
    }

    /// A command that runs `program args..` inside the throttled cgroup.
    pub fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(format!(
                "echo $$ > {}/cgroup.procs && exec \"$0\" \"$@\"",
                self.cgroup.display()
            ))
            .arg(program)
            .args(args);
        c
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        for _ in 0..50 {
            if std::fs::remove_dir(&self.cgroup).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// The tests' random numbers: xorshift64, seeded from `DMAREC_TEST_SEED`,
/// else from `default` (or the clock when `None`). The seed is printed so a
/// failing run can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn seeded(test: &str, default: Option<u64>) -> Rng {
        let seed = std::env::var("DMAREC_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .or(default)
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: DMAREC_TEST_SEED={seed}");
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform-ish in 0..n (n > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }

    /// An index into a collection of `n` elements.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

/// Records `size` bytes from the simulated card into a new file
/// `<name>.img` of `file_size` in `s`, with the index beside it and `extra`
/// dmarec arguments. Returns the image and index paths.
pub fn record_to_file(
    s: &Scratch,
    name: &str,
    file_size: &str,
    size: &str,
    extra: &[&str],
) -> (String, String) {
    let (img, idx, _summary) = record_summary(s, name, file_size, size, extra);
    (img, idx)
}

/// [`record_to_file`], also returning the summary dmarec printed with `--json`.
pub fn record_summary(
    s: &Scratch,
    name: &str,
    file_size: &str,
    size: &str,
    extra: &[&str],
) -> (String, String, serde_json::Value) {
    let (img, idx) = (
        s.file(&format!("{name}.img")),
        s.file(&format!("{name}.idx")),
    );
    let mut args = vec![
        "record",
        "--quiet",
        "--json",
        "--target",
        &img,
        "--file-size",
        file_size,
        "--index",
        &idx,
        "--size",
        size,
    ];
    args.extend_from_slice(extra);
    let summary = json(&run_ok("dmarec", &args));
    (img, idx, summary)
}

/// [`record_to_file`] of `size` from a card of 3 channels interleaved in
/// every 64 KiB buffer (5461 frames of 4-byte samples), 16 buffers, every
/// 5th buffer lost, into `il.img` (32 MiB) in `s`, with `extra` arguments.
pub fn record_interleaved(s: &Scratch, size: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec![
        "--payload-size",
        "64K",
        "--buffers",
        "16",
        "--channels",
        "3",
        "--channel-layout",
        "interleaved",
        "--sim-drop-every",
        "5",
    ];
    args.extend_from_slice(extra);
    record_to_file(s, "il", "32M", size, &args)
}

/// A pseudo-terminal: (master, slave, slave's path). Closed on drop.
pub fn pty() -> (std::fs::File, std::fs::File, String) {
    use std::os::fd::FromRawFd;
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two new file descriptors into our integers;
    // the name, termios and winsize pointers may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned
    // by nothing else: each File takes sole ownership and closes it.
    let (master, slave) = unsafe {
        (
            std::fs::File::from_raw_fd(master),
            std::fs::File::from_raw_fd(slave),
        )
    };
    let path = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&slave)
    ))
    .unwrap()
    .display()
    .to_string();
    (master, slave, path)
}
