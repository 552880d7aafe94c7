//! Topology files of simulated machines: the TOML format, its defaults, and its validation.
//!
//! The format is documented on [`Topology`].

use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::fault::Fault;
use crate::{DeviceInfo, Error, Result};

/// Machine name when the file has none (it seeds the GPUs' UUIDs).
pub const DEFAULT_MACHINE_NAME: &str = "Simulated machine";
/// CUDA 12.8, as `cuDriverGetVersion` encodes it.
pub const DEFAULT_DRIVER_VERSION: i32 = 12080;
/// An RTX 4090's memory.
pub const DEFAULT_MEMORY_MIB: u64 = 24576;
/// Pinned host copies over PCIe Gen4 x16.
pub const DEFAULT_HOST_GBPS: f64 = 25.0;
/// Direct peer copies of a claimed pair.
pub const DEFAULT_PEER_GBPS: f64 = 50.0;
/// What every simulated GPU reports (Ada).
pub const SIM_COMPUTE_CAPABILITY: (u32, u32) = (8, 9);
/// What every simulated GPU reports.
pub const SIM_COPY_ENGINES: u32 = 2;

const MIB: u64 = 1 << 20;

/// A simulated machine, validated, with every default filled in: what a
/// topology file (TOML) describes.
///
/// ```toml
/// [machine]
/// name = "4 x RTX 4090 on PCIe"   # optional
/// driver_version = 12080          # optional; part of the cache fingerprint
/// [[gpu]]                         # ordinal = order of the [[gpu]] tables
/// name = "Sim RTX 4090"           # optional
/// pci = "0000:01:00.0"            # optional
/// memory_mib = 24576              # optional
/// host_gbps = 25.0                # optional; pinned copy speed to and from host
/// [[peer]]                        # a pair with no entry is not claimed
/// from = 0
/// to = 1
/// both = true                     # optional, default false: the same for 1 -> 0
/// claimed = true                  # optional, default true: what cuDeviceCanAccessPeer says
/// gbps = 50.0                     # optional
/// fault = "none"                  # optional: none | zeros | corrupt | drop-tail | hang | late | enable-fails
/// late_ms = 50                    # with fault = "late" only (required there): see Fault::Late
/// ```
///
/// Every mistake — bad TOML, an unknown key or fault, a peer naming a GPU
/// that does not exist, a pair given twice — is an [`Error::Topology`] that
/// names the file, line and column.
///
/// ```
/// use std::path::Path;
/// use p2p_core::sim::{Fault, Topology};
///
/// let text = r#"
/// [[gpu]]
/// [[gpu]]
/// [[peer]]
/// from = 0
/// to = 1
/// fault = "drop-tail"
/// "#;
/// let topology = Topology::parse(text, Path::new("two-gpus.toml"))?;
/// assert_eq!(topology.gpus.len(), 2);
/// assert_eq!(topology.peer(0, 1).map(|peer| peer.fault), Some(Fault::DropTail));
/// assert!(topology.peer(1, 0).is_none()); // not claimed
///
/// let err = Topology::parse("[[gpu]]\n[[peer]]\nfrom = 0\nto = 5\n", Path::new("bad.toml"))
///     .unwrap_err();
/// println!("{err}"); // bad.toml:4:6: [[peer]] names gpu 5, but the file has 1 [[gpu]] table(s) ...
/// assert!(err.to_string().starts_with("bad.toml:4:"));
/// # Ok::<(), p2p_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Topology {
    /// `[machine] name` (it seeds the GPUs' UUIDs, and so the cache fingerprint).
    pub machine_name: String,
    /// As CUDA encodes it (`12080` = 12.8).
    pub driver_version: i32,
    /// In ordinal order.
    pub gpus: Vec<GpuSpec>,
    /// One entry per ordered pair that the file describes (`both = true` gives two).
    pub peers: Vec<PeerSpec>,
}

/// One simulated GPU.
#[derive(Clone, Debug, PartialEq)]
pub struct GpuSpec {
    /// What the device reports as its name.
    pub name: String,
    /// `GPU-sim-...`, derived from the machine name and the ordinal.
    pub uuid: String,
    /// `dddd:bb:dd.f`.
    pub pci_bus_id: String,
    /// Device memory; allocating past it is out of memory.
    pub memory_mib: u64,
    /// Speed of pinned copies to and from the host, in GB/s.
    pub host_gbps: f64,
}

/// One direction of a simulated peer path.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PeerSpec {
    /// The device the bytes come from.
    pub from: usize,
    /// The device the bytes go to.
    pub to: usize,
    /// What `cuDeviceCanAccessPeer` says.
    pub claimed: bool,
    /// Speed of direct peer copies, in GB/s.
    pub gbps: f64,
    /// What goes wrong on this direction's direct peer path.
    pub fault: Fault,
}

impl Topology {
    /// Reads and validates a topology file.
    pub fn from_file(path: &Path) -> Result<Topology> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            action: "reading topology file",
            path: path.to_path_buf(),
            source,
        })?;
        Topology::parse(&text, path)
    }

    /// Parses and validates topology text (the format above); `path` only
    /// appears in error messages. Errors are [`Error::Topology`].
    pub fn parse(text: &str, path: &Path) -> Result<Topology> {
        let file: TopologyFile = toml::from_str(text).map_err(|err| {
            let offset = err.span().map_or(0, |span| span.start);
            let (line, column) = line_column(text, offset);
            Error::Topology {
                path: path.to_path_buf(),
                line,
                column,
                message: err.message().to_string(),
            }
        })?;
        file.validate(text).map_err(|(span, message)| {
            let (line, column) = span.map_or((1, 1), |span| line_column(text, span.start));
            Error::Topology {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        })
    }

    /// The file's entry for `from -> to`, if it has one.
    pub fn peer(&self, from: usize, to: usize) -> Option<&PeerSpec> {
        self.peers
            .iter()
            .find(|peer| peer.from == from && peer.to == to)
    }

    /// What a driver reports for each GPU, in ordinal order.
    pub fn device_infos(&self) -> Vec<DeviceInfo> {
        self.gpus
            .iter()
            .enumerate()
            .map(|(ordinal, gpu)| DeviceInfo {
                ordinal,
                name: gpu.name.clone(),
                uuid: gpu.uuid.clone(),
                pci_bus_id: gpu.pci_bus_id.clone(),
                compute_capability: SIM_COMPUTE_CAPABILITY,
                total_memory_bytes: gpu.memory_mib.saturating_mul(MIB),
                copy_engines: SIM_COPY_ENGINES,
            })
            .collect()
    }
}

/// The file as written, before defaults and cross-checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyFile {
    #[serde(default)]
    machine: Option<MachineTable>,
    #[serde(default)]
    gpu: Vec<Spanned<GpuTable>>,
    #[serde(default)]
    peer: Vec<Spanned<PeerTable>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MachineTable {
    name: Option<String>,
    driver_version: Option<Spanned<i32>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuTable {
    name: Option<String>,
    pci: Option<Spanned<String>>,
    memory_mib: Option<Spanned<u64>>,
    host_gbps: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerTable {
    from: Spanned<usize>,
    to: Spanned<usize>,
    #[serde(default)]
    both: bool,
    #[serde(default = "default_claimed")]
    claimed: bool,
    gbps: Option<Spanned<f64>>,
    #[serde(default)]
    fault: FaultName,
    late_ms: Option<Spanned<u64>>,
}

/// A fault as the file spells it (`late` takes its time from `late_ms`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum FaultName {
    #[default]
    None,
    Zeros,
    Corrupt,
    DropTail,
    Hang,
    Late,
    EnableFails,
}

fn default_claimed() -> bool {
    true
}

/// A validation failure: where (byte span in the text, if known) and what.
type Invalid = (Option<Range<usize>>, String);

impl TopologyFile {
    fn validate(self, text: &str) -> std::result::Result<Topology, Invalid> {
        let machine_name = self
            .machine
            .as_ref()
            .and_then(|machine| machine.name.clone())
            .unwrap_or_else(|| DEFAULT_MACHINE_NAME.to_string());
        let driver_version = match self
            .machine
            .as_ref()
            .and_then(|m| m.driver_version.as_ref())
        {
            None => DEFAULT_DRIVER_VERSION,
            Some(version) if *version.get_ref() > 0 => *version.get_ref(),
            Some(version) => {
                return Err((
                    Some(version.span()),
                    format!(
                        "driver_version must be positive (12080 means CUDA 12.8), not {}",
                        version.get_ref()
                    ),
                ))
            }
        };

        // Explicit PCI addresses first, so that made-up ones can avoid them.
        let mut pci_seen: HashMap<String, usize> = HashMap::new();
        for (ordinal, table) in self.gpu.iter().enumerate() {
            let Some(pci) = &table.get_ref().pci else {
                continue;
            };
            if !is_pci_bus_id(pci.get_ref()) {
                return Err((
                    Some(pci.span()),
                    format!(
                        "pci {:?} is not a PCI address of the form dddd:bb:dd.f (hex)",
                        pci.get_ref()
                    ),
                ));
            }
            let pci_bus_id = pci.get_ref().to_ascii_lowercase();
            if let Some(first) = pci_seen.insert(pci_bus_id.clone(), ordinal) {
                return Err((
                    Some(pci.span()),
                    format!("gpu {ordinal} has the same PCI address {pci_bus_id} as gpu {first}"),
                ));
            }
        }

        let mut gpus = Vec::with_capacity(self.gpu.len());
        for (ordinal, table) in self.gpu.iter().enumerate() {
            let gpu = table.get_ref();
            let pci_bus_id = match &gpu.pci {
                Some(pci) => pci.get_ref().to_ascii_lowercase(),
                None => {
                    // `0000:NN:00.0` with NN the ordinal, or the next bus that no GPU names.
                    let made_up = (ordinal..)
                        .map(|bus| format!("0000:{bus:02x}:00.0"))
                        .find(|candidate| !pci_seen.contains_key(candidate))
                        .unwrap_or_default();
                    pci_seen.insert(made_up.clone(), ordinal);
                    made_up
                }
            };
            let memory_mib = match &gpu.memory_mib {
                None => DEFAULT_MEMORY_MIB,
                Some(mib) if mib.get_ref().checked_mul(MIB).is_some() => *mib.get_ref(),
                Some(mib) => {
                    return Err((
                        Some(mib.span()),
                        format!("memory_mib {} is too large", mib.get_ref()),
                    ))
                }
            };
            let host_gbps = speed("host_gbps", gpu.host_gbps.as_ref(), DEFAULT_HOST_GBPS)?;
            let mut spec = GpuSpec::default_for(&machine_name, ordinal);
            if let Some(name) = &gpu.name {
                spec.name = name.clone();
            }
            gpus.push(GpuSpec {
                pci_bus_id,
                memory_mib,
                host_gbps,
                ..spec
            });
        }

        let count = gpus.len();
        let mut peers: Vec<PeerSpec> = Vec::new();
        let mut first_entry: HashMap<(usize, usize), usize> = HashMap::new();
        for table in &self.peer {
            let peer = table.get_ref();
            for end in [&peer.from, &peer.to] {
                if *end.get_ref() >= count {
                    return Err((
                        Some(end.span()),
                        format!(
                            "[[peer]] names gpu {}, but the file has {count} [[gpu]] table(s) (ordinals count from 0)",
                            end.get_ref()
                        ),
                    ));
                }
            }
            let (from, to) = (*peer.from.get_ref(), *peer.to.get_ref());
            if from == to {
                return Err((
                    Some(table.span()),
                    format!("[[peer]] from gpu {from} to itself: a device always reaches its own memory"),
                ));
            }
            let gbps = speed("gbps", peer.gbps.as_ref(), DEFAULT_PEER_GBPS)?;
            let fault = match (peer.fault, &peer.late_ms) {
                (FaultName::Late, Some(ms)) => Fault::Late { ms: *ms.get_ref() },
                (FaultName::Late, None) => {
                    return Err((
                        Some(table.span()),
                        "fault = \"late\" needs late_ms = N (virtual milliseconds past the copy's normal end)".to_string(),
                    ))
                }
                (_, Some(ms)) => {
                    return Err((
                        Some(ms.span()),
                        "late_ms is only for fault = \"late\"".to_string(),
                    ))
                }
                (FaultName::None, None) => Fault::None,
                (FaultName::Zeros, None) => Fault::Zeros,
                (FaultName::Corrupt, None) => Fault::Corrupt,
                (FaultName::DropTail, None) => Fault::DropTail,
                (FaultName::Hang, None) => Fault::Hang,
                (FaultName::EnableFails, None) => Fault::EnableFails,
            };
            let directions: &[(usize, usize)] = if peer.both {
                &[(from, to), (to, from)]
            } else {
                &[(from, to)]
            };
            for &(a, b) in directions {
                if let Some(first) = first_entry.insert((a, b), table.span().start) {
                    return Err((
                        Some(table.span()),
                        format!(
                            "a second [[peer]] entry for {a} -> {b} (the first is at line {})",
                            line_column(text, first).0
                        ),
                    ));
                }
                peers.push(PeerSpec {
                    from: a,
                    to: b,
                    claimed: peer.claimed,
                    gbps,
                    fault,
                });
            }
        }

        Ok(Topology {
            machine_name,
            driver_version,
            gpus,
            peers,
        })
    }
}

impl GpuSpec {
    /// GPU `ordinal` of machine `machine_name` with every default of the
    /// file format: what a `[[gpu]]` table with no keys describes.
    pub(super) fn default_for(machine_name: &str, ordinal: usize) -> GpuSpec {
        GpuSpec {
            name: format!("Simulated GPU {ordinal}"),
            uuid: sim_uuid(machine_name, ordinal),
            pci_bus_id: format!("0000:{ordinal:02x}:00.0"),
            memory_mib: DEFAULT_MEMORY_MIB,
            host_gbps: DEFAULT_HOST_GBPS,
        }
    }
}

/// A speed in GB/s, which must be a positive finite number.
fn speed(
    key: &str,
    value: Option<&Spanned<f64>>,
    default: f64,
) -> std::result::Result<f64, Invalid> {
    match value {
        None => Ok(default),
        Some(v) if v.get_ref().is_finite() && *v.get_ref() > 0.0 => Ok(*v.get_ref()),
        Some(v) => Err((
            Some(v.span()),
            format!(
                "{key} must be a positive number of GB/s, not {}",
                v.get_ref()
            ),
        )),
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// `dddd:bb:dd.f`, hex digits, any case.
fn is_pci_bus_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    let shape = b"hhhh:hh:hh.h";
    bytes.len() == shape.len()
        && bytes.iter().zip(shape).all(|(&c, &s)| {
            if s == b'h' {
                c.is_ascii_hexdigit()
            } else {
                c == s
            }
        })
}

/// A UUID-shaped name that depends only on the machine name and the ordinal,
/// so that a topology file gives the same cache fingerprint on every run.
pub(super) fn sim_uuid(machine_name: &str, ordinal: usize) -> String {
    // FNV-1a, written out: std's hashers do not promise stable output across releases.
    fn fnv1a(seed: u64, parts: &[&[u8]]) -> u64 {
        let mut hash = 0xcbf2_9ce4_8422_2325 ^ seed;
        for part in parts {
            for &byte in *part {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        hash
    }
    let ordinal = (ordinal as u64).to_le_bytes();
    let parts: [&[u8]; 3] = [machine_name.as_bytes(), b"\0", &ordinal];
    let high = fnv1a(0, &parts);
    let low = fnv1a(0x9e37_79b9_7f4a_7c15, &parts);
    format!(
        "GPU-sim-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        low >> 48,
        low & 0xffff_ffff_ffff
    )
}
