//! Route builders: each turns a plan and the move's endpoints into a
//! [`Schedule`], without touching a device. The planner chose the route and
//! the layout; a builder only lays them out as operations.

pub(crate) mod coalesced;
mod host;
mod peer;
mod staged;
mod via;

use p2p_core::Location;

use super::order::Sides;
use super::schedule::Schedule;
use crate::{Layout, Plan, Route};

pub(crate) use peer::batch;

/// One end of a move, as the builders need it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// Memory on a GPU.
    Device(usize),
    /// Host memory; `pinned` = page-locked (the GPU can DMA it directly).
    Host { pinned: bool },
}

impl Endpoint {
    pub(crate) fn location(self) -> Location {
        match self {
            Endpoint::Device(device) => Location::Cuda(device),
            Endpoint::Host { .. } => Location::Host,
        }
    }
}

/// The plan does not fit the endpoints it was given (a caller bug).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Mismatch {
    pub(crate) route: Route,
    pub(crate) src: Endpoint,
    pub(crate) dst: Endpoint,
}

/// The schedule of `plan` between `src` and `dst`, ordered with `sides`.
pub(crate) fn build(
    plan: &Plan,
    src: Endpoint,
    dst: Endpoint,
    sides: Sides,
) -> Result<Schedule, Mismatch> {
    let mismatch = Mismatch {
        route: plan.route,
        src,
        dst,
    };
    if src.location() != plan.src || dst.location() != plan.dst {
        return Err(mismatch);
    }
    // A no-op plan says the bytes need not travel; between two buffers of
    // one place they are still copied there, so only zero bytes is empty.
    if plan.bytes == 0 || (plan.layout == Layout::Empty && plan.route != Route::NoOp) {
        return Ok(super::schedule::Builder::new().finish(None, (0, 0), None));
    }
    let len = plan.bytes;
    match (src, dst, plan.route) {
        (Endpoint::Device(s), Endpoint::Device(_), Route::Peer | Route::NoOp) => {
            Ok(peer::single(s, len, sides))
        }
        (Endpoint::Host { .. }, Endpoint::Host { .. }, Route::NoOp) => {
            Ok(host::host_to_host(len, sides))
        }
        (Endpoint::Device(s), Endpoint::Device(d), Route::Staged) => {
            Ok(staged::build(plan, s, d, sides))
        }
        (Endpoint::Device(s), Endpoint::Device(d), Route::Via { gpu }) => {
            Ok(via::build(plan, s, gpu, d, sides))
        }
        (Endpoint::Host { pinned: true }, Endpoint::Device(d), Route::HostToDevice) => {
            Ok(host::upload_pinned(d, len, sides))
        }
        (Endpoint::Host { pinned: false }, Endpoint::Device(d), Route::HostToDevice) => {
            Ok(host::upload_pageable(plan, d, sides))
        }
        (Endpoint::Device(s), Endpoint::Host { pinned: true }, Route::DeviceToHost) => {
            Ok(host::download_pinned(s, len, sides))
        }
        (Endpoint::Device(s), Endpoint::Host { pinned: false }, Route::DeviceToHost) => {
            Ok(host::download_pageable(plan, s, sides))
        }
        _ => Err(mismatch),
    }
}
