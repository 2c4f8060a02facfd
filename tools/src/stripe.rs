//! The stripe set: the targets given on the command line, in any order,
//! put in member order by their superblocks, checked to be one recording.
//!
//! A missing member is not an error here: read commands go on with the
//! members that are present and report the missing member's slots as
//! unavailable; `reindex` refuses (see [`StripeSet::require_complete`]).

use crate::scans::{read_scans, ScanInfo, Scans};
use crate::target::Target;
use anyhow::{bail, Result};
use formats::{Layout, Superblock, Uuid};
use std::path::PathBuf;

pub struct StripeSet {
    /// Members in member order; `None` for a member not given.
    pub members: Vec<Option<Target>>,
    /// The recording's superblock as member 0 holds it (device_index 0),
    /// with the selected scan's time anchor (its table entry's).
    pub superblock: Superblock,
    /// The scans of the set, and the one the commands read.
    pub scans: Scans,
    pub scan: ScanInfo,
    /// The selected scan's layout (its region of the set).
    pub layout: Layout,
    /// The whole set's layout.
    pub set_layout: Layout,
}

/// A member of the stripe set that was not among the targets.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MissingMember {
    pub device_index: usize,
    pub uuid: String,
    pub size_bytes: u64,
    pub slot_count: u64,
}

impl StripeSet {
    /// Opens every target and assembles the stripe set.
    pub fn open(paths: &[PathBuf]) -> Result<StripeSet> {
        assert!(!paths.is_empty(), "clap requires at least one target");
        let mut targets = Vec::with_capacity(paths.len());
        for p in paths {
            targets.push(Target::open(p)?);
        }
        StripeSet::assemble(targets)
    }

    pub fn assemble(targets: Vec<Target>) -> Result<StripeSet> {
        let reference_path = targets[0].path.display().to_string();
        let mut reference = targets[0].superblock.clone();
        reference.device_index = 0;
        let device_count = reference.members.len();
        let mut members: Vec<Option<Target>> = (0..device_count).map(|_| None).collect();
        for t in targets {
            let sb = &t.superblock;
            if sb.recording_uuid != reference.recording_uuid {
                bail!(
                    "target {} belongs to recording {}, but target {} to recording {}: give the members of one recording",
                    t.path.display(),
                    sb.recording_uuid,
                    reference_path,
                    reference.recording_uuid
                );
            }
            let mut normalized = sb.clone();
            normalized.device_index = 0;
            if normalized != reference {
                bail!(
                    "target {}: its superblock disagrees with the other members' (member table, geometry or channels) although it has the same recording UUID {}",
                    t.path.display(),
                    sb.recording_uuid
                );
            }
            let index = sb.device_index as usize;
            let need = sb.member().size_bytes;
            if t.size_bytes < need {
                // A truncated copy: read what is there; slots past its end are
                // reported as unreadable ("end of device") by every command.
                eprintln!(
                    "dmaplay: warning: target {}: {} bytes, but member {index} of recording {} was {need} bytes (truncated copy?); slots past byte {} are unreadable",
                    t.path.display(),
                    t.size_bytes,
                    sb.recording_uuid,
                    t.size_bytes
                );
            }
            if let Some(other) = &members[index] {
                bail!(
                    "targets {} and {} are both member {index} of recording {}: give each member once",
                    other.path.display(),
                    t.path.display(),
                    sb.recording_uuid
                );
            }
            members[index] = Some(t);
        }
        let set_layout = Layout::from_superblock(&reference);
        let scans = read_scans(&members, &reference)?;
        let scan = scans.select(None)?.0.clone();
        // Each scan starts its own card time: readers take the scan's anchor.
        reference.time_anchor = scan.entry.time_anchor;
        Ok(StripeSet {
            members,
            superblock: reference,
            layout: scan.layout(&set_layout),
            scans,
            scan,
            set_layout,
        })
    }

    /// Reads scan `wanted` (name or UUID); `None`: the only or newest scan,
    /// named on stderr when the set has several.
    pub fn select_scan(&mut self, wanted: Option<&str>) -> Result<()> {
        let (scan, defaulted) = self.scans.select(wanted)?;
        if defaulted {
            eprintln!(
                "dmaplay: reading scan {:?} ({} of {}, uuid {}, the newest); choose another with --scan NAME|UUID (`dmaplay list`)",
                scan.entry.name,
                scan.number,
                self.scans.scans.len(),
                scan.entry.uuid
            );
        }
        self.scan = scan.clone();
        self.layout = self.scan.layout(&self.set_layout);
        self.superblock.time_anchor = self.scan.entry.time_anchor;
        Ok(())
    }

    pub fn missing(&self) -> Vec<MissingMember> {
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.is_none())
            .map(|(i, _)| {
                let m = &self.superblock.members[i];
                MissingMember {
                    device_index: i,
                    uuid: m.uuid.to_string(),
                    size_bytes: m.size_bytes,
                    slot_count: m.slot_count,
                }
            })
            .collect()
    }

    /// An error naming every missing member, for commands that need them all.
    pub fn require_complete(&self, command: &str) -> Result<()> {
        let missing = self.missing();
        if missing.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = missing
            .iter()
            .map(|m| {
                format!(
                    "member {} (uuid {}, {} bytes)",
                    m.device_index, m.uuid, m.size_bytes
                )
            })
            .collect();
        bail!(
            "{command}: recording {} has {} members, missing: {}; give every member as a target",
            self.superblock.recording_uuid,
            self.members.len(),
            names.join(", ")
        )
    }

    /// Prints one warning line per missing member (read commands go on without it).
    pub fn warn_missing(&self) {
        for m in self.missing() {
            eprintln!(
                "dmaplay: warning: member {} of recording {} (uuid {}, {} bytes) was not given; its {} slots are reported as unavailable",
                m.device_index, self.superblock.recording_uuid, m.uuid, m.size_bytes, m.slot_count
            );
        }
        for t in self.members.iter().flatten() {
            if let Some(why) = &t.primary_damage {
                eprintln!(
                    "dmaplay: warning: target {}: primary superblock damaged ({why}); using the backup copy",
                    t.path.display()
                );
            }
        }
    }

    /// The UUID the selected scan's slots carry (a 1.0 set: the recording's).
    pub fn recording_uuid(&self) -> Uuid {
        self.scan.entry.uuid
    }

    pub fn member(&self, device_index: usize) -> Option<&Target> {
        self.members.get(device_index).and_then(|m| m.as_ref())
    }

    /// Refuses an output path (`what`: "--out", "--index") that is a block
    /// device or the same file as a target: dmaplay never writes to one.
    pub fn refuse_output(&self, path: &std::path::Path, what: &str) -> Result<()> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let Ok(meta) = std::fs::metadata(path) else {
            return Ok(()); // does not exist yet: a new file
        };
        if meta.file_type().is_block_device() {
            bail!(
                "{what} {}: is a block device; dmaplay writes its outputs to files, FIFOs or stdout only",
                path.display()
            );
        }
        for t in self.members.iter().flatten() {
            if let Ok(m) = std::fs::metadata(&t.path) {
                if m.dev() == meta.dev() && m.ino() == meta.ino() {
                    bail!(
                        "{what} {}: is target {} of the recording; dmaplay never writes to a target, choose another path",
                        path.display(),
                        t.path.display()
                    );
                }
            }
        }
        Ok(())
    }

    /// Path of a member for messages, or `"<missing member N>"`.
    pub fn describe(&self, device_index: usize) -> String {
        match self.member(device_index) {
            Some(t) => t.path.display().to_string(),
            None => format!("<missing member {device_index}>"),
        }
    }
}
