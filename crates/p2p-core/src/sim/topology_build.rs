//! Topologies built in code: N GPUs with the file format's defaults, then peer entries one at a time.
//!
//! The same machines a topology file describes, for tests and examples that
//! would rather not write TOML:
//!
//! ```
//! use std::path::Path;
//! use p2p_core::sim::{Fault, Topology};
//!
//! // Three GPUs: 0 <-> 1 healthy, 1 -> 2 delivers zeros, nothing else claimed.
//! let built = Topology::with_gpus(3)
//!     .named("my test box")
//!     .with_pair(0, 1)
//!     .with_fault(1, 2, Fault::Zeros);
//! let text = r#"
//! [machine]
//! name = "my test box"
//! [[gpu]]
//! [[gpu]]
//! [[gpu]]
//! [[peer]]
//! from = 0
//! to = 1
//! both = true
//! [[peer]]
//! from = 1
//! to = 2
//! fault = "zeros"
//! "#;
//! assert_eq!(built, Topology::parse(text, Path::new("box.toml"))?);
//! # Ok::<(), p2p_core::Error>(())
//! ```
//!
//! Unlike a parsed file, a topology built in code is not validated: an
//! entry naming a GPU the machine lacks, or a GPU and itself, is ignored by
//! the simulator (as in any topology whose fields were set by hand).

use super::fault::Fault;
use super::topology::{GpuSpec, PeerSpec, Topology};
use super::topology::{DEFAULT_DRIVER_VERSION, DEFAULT_MACHINE_NAME, DEFAULT_PEER_GBPS};

impl Topology {
    /// `gpus` GPUs with every default of the file format (as `[[gpu]]`
    /// tables with no keys), named [`DEFAULT_MACHINE_NAME`], and no peer
    /// entry: no pair is claimed.
    pub fn with_gpus(gpus: usize) -> Topology {
        Topology {
            machine_name: DEFAULT_MACHINE_NAME.to_string(),
            driver_version: DEFAULT_DRIVER_VERSION,
            gpus: (0..gpus)
                .map(|ordinal| GpuSpec::default_for(DEFAULT_MACHINE_NAME, ordinal))
                .collect(),
            peers: Vec::new(),
        }
    }

    /// `gpus` GPUs (as [`Topology::with_gpus`]) with every ordered pair
    /// claimed, fault-free, at [`DEFAULT_PEER_GBPS`]: the healthy machine.
    pub fn fully_connected(gpus: usize) -> Topology {
        let mut topology = Topology::with_gpus(gpus);
        for a in 0..gpus {
            for b in a + 1..gpus {
                topology = topology.with_pair(a, b);
            }
        }
        topology
    }

    /// The same machine under the name `name`, which seeds the GPUs' UUIDs
    /// (and so the verdict cache's fingerprint): two machines of one shape
    /// and different names share no cached verdicts.
    pub fn named(mut self, name: &str) -> Topology {
        self.machine_name = name.to_string();
        let fresh = (0..self.gpus.len()).map(|ordinal| GpuSpec::default_for(name, ordinal).uuid);
        for (gpu, uuid) in self.gpus.iter_mut().zip(fresh) {
            gpu.uuid = uuid;
        }
        self
    }

    /// With `peer` as the entry for its direction, replacing the one there was.
    pub fn with_peer(mut self, peer: PeerSpec) -> Topology {
        match self
            .peers
            .iter_mut()
            .find(|old| (old.from, old.to) == (peer.from, peer.to))
        {
            Some(old) => *old = peer,
            None => self.peers.push(peer),
        }
        self
    }

    /// With `from -> to` claimed, at [`DEFAULT_PEER_GBPS`], with `fault` on
    /// its direct peer path (the other direction is left as it was).
    pub fn with_fault(self, from: usize, to: usize, fault: Fault) -> Topology {
        self.with_peer(PeerSpec {
            fault,
            ..PeerSpec::new(from, to)
        })
    }

    /// With both directions between `a` and `b` claimed and fault-free (a
    /// `[[peer]]` entry with `both = true`).
    pub fn with_pair(self, a: usize, b: usize) -> Topology {
        self.with_peer(PeerSpec::new(a, b))
            .with_peer(PeerSpec::new(b, a))
    }
}

impl PeerSpec {
    /// `from -> to` claimed, fault-free, at [`DEFAULT_PEER_GBPS`]: a
    /// `[[peer]]` entry with only `from` and `to`. Change a field with
    /// struct update syntax: `PeerSpec { gbps: 10.0, ..PeerSpec::new(0, 1) }`.
    pub fn new(from: usize, to: usize) -> PeerSpec {
        PeerSpec {
            from,
            to,
            claimed: true,
            gbps: DEFAULT_PEER_GBPS,
            fault: Fault::None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn parsed(text: &str) -> Topology {
        Topology::parse(text, Path::new("t.toml")).unwrap()
    }

    #[test]
    fn built_machines_equal_their_files() {
        assert_eq!(Topology::with_gpus(0), parsed(""));
        assert_eq!(
            Topology::with_gpus(3),
            parsed("[[gpu]]\n[[gpu]]\n[[gpu]]\n")
        );
        assert_eq!(
            Topology::with_gpus(2).named("box"),
            parsed("[machine]\nname = \"box\"\n[[gpu]]\n[[gpu]]\n")
        );
        let unclaimed = PeerSpec {
            claimed: false,
            gbps: 7.5,
            ..PeerSpec::new(1, 0)
        };
        assert_eq!(
            Topology::with_gpus(2)
                .with_fault(0, 1, Fault::Late { ms: 40 })
                .with_peer(unclaimed),
            parsed(
                "[[gpu]]\n[[gpu]]\n[[peer]]\nfrom = 0\nto = 1\nfault = \"late\"\nlate_ms = 40\n\
                 [[peer]]\nfrom = 1\nto = 0\nclaimed = false\ngbps = 7.5\n"
            )
        );
        assert_eq!(
            Topology::fully_connected(3),
            parsed(
                "[[gpu]]\n[[gpu]]\n[[gpu]]\n\
                 [[peer]]\nfrom = 0\nto = 1\nboth = true\n\
                 [[peer]]\nfrom = 0\nto = 2\nboth = true\n\
                 [[peer]]\nfrom = 1\nto = 2\nboth = true\n"
            )
        );
    }

    #[test]
    fn a_later_entry_replaces_an_earlier_one_of_its_direction() {
        let topology = Topology::with_gpus(2)
            .with_pair(0, 1)
            .with_fault(0, 1, Fault::Hang);
        assert_eq!(topology.peers.len(), 2);
        assert_eq!(topology.peer(0, 1).map(|p| p.fault), Some(Fault::Hang));
        assert_eq!(topology.peer(1, 0).map(|p| p.fault), Some(Fault::None));
    }

    #[test]
    fn the_name_seeds_every_uuid() {
        let a = Topology::with_gpus(2).named("a");
        let b = Topology::with_gpus(2).named("b");
        assert_ne!(a.gpus[0].uuid, b.gpus[0].uuid);
        assert_ne!(a.gpus[0].uuid, a.gpus[1].uuid);
        assert_eq!(a.gpus, Topology::with_gpus(2).named("b").named("a").gpus);
    }
}
