//! Events as CUDA defines them: every record is a new version, and waits and queries are about one version.

use std::collections::HashMap;

use super::race::VClock;
use crate::{EventId, StreamId};

/// A version that has run.
#[derive(Clone, Debug)]
pub(super) struct Done {
    /// Virtual time it completed.
    pub(super) stamp_ns: u64,
    /// Its stream's race-detector clock then (what a wait on it acquires).
    pub(super) clock: VClock,
}

#[derive(Debug)]
struct Version {
    /// The stream it was recorded on.
    stream: StreamId,
    done: Option<Done>,
    /// Queued `stream_wait_event`s that still refer to it.
    waiters: u32,
}

#[derive(Debug)]
struct Handle {
    timing: bool,
    /// The latest version recorded (0: never recorded).
    current: u64,
}

/// Where one version of an event stands.
#[derive(Clone, Debug)]
pub(super) enum Status {
    /// Never recorded: complete, as in CUDA.
    NeverRecorded,
    Done(Done),
    /// Its record is still queued on this stream.
    Pending(StreamId),
}

/// Every event handle and every version something may still ask about.
#[derive(Debug, Default)]
pub(super) struct Events {
    handles: HashMap<EventId, Handle>,
    versions: HashMap<(EventId, u64), Version>,
    pub(super) next_raw: u64,
}

impl Events {
    pub(super) fn new() -> Events {
        Events {
            next_raw: 1,
            ..Events::default()
        }
    }

    pub(super) fn create(&mut self, id: EventId, timing: bool) {
        self.handles.insert(id, Handle { timing, current: 0 });
    }

    pub(super) fn exists(&self, id: EventId) -> bool {
        self.handles.contains_key(&id)
    }

    /// Destroys the handle; queued work that refers to its versions still completes.
    pub(super) fn destroy(&mut self, id: EventId) -> bool {
        let Some(handle) = self.handles.remove(&id) else {
            return false;
        };
        self.prune(id, handle.current);
        true
    }

    pub(super) fn timing(&self, id: EventId) -> bool {
        self.handles.get(&id).is_some_and(|handle| handle.timing)
    }

    /// The current version of a live event (0: never recorded).
    pub(super) fn current(&self, id: EventId) -> Option<u64> {
        self.handles.get(&id).map(|handle| handle.current)
    }

    /// A new version recorded on `stream`; returns its number.
    pub(super) fn record(&mut self, id: EventId, stream: StreamId) -> Option<u64> {
        let handle = self.handles.get_mut(&id)?;
        let previous = handle.current;
        handle.current += 1;
        let version = handle.current;
        self.versions.insert(
            (id, version),
            Version {
                stream,
                done: None,
                waiters: 0,
            },
        );
        self.prune(id, previous);
        Some(version)
    }

    /// A `stream_wait_event` now refers to `version`.
    pub(super) fn add_waiter(&mut self, id: EventId, version: u64) {
        if let Some(v) = self.versions.get_mut(&(id, version)) {
            v.waiters += 1;
        }
    }

    /// A `stream_wait_event` that referred to `version` has run.
    pub(super) fn remove_waiter(&mut self, id: EventId, version: u64) {
        if let Some(v) = self.versions.get_mut(&(id, version)) {
            v.waiters = v.waiters.saturating_sub(1);
        }
        self.prune(id, version);
    }

    /// The record of `version` has run.
    pub(super) fn complete(&mut self, id: EventId, version: u64, done: Done) {
        if let Some(v) = self.versions.get_mut(&(id, version)) {
            v.done = Some(done);
        }
        self.prune(id, version);
    }

    pub(super) fn status(&self, id: EventId, version: u64) -> Status {
        if version == 0 {
            return Status::NeverRecorded;
        }
        match self.versions.get(&(id, version)) {
            Some(Version {
                done: Some(done), ..
            }) => Status::Done(done.clone()),
            Some(Version { stream, .. }) => Status::Pending(*stream),
            // Only versions nothing can ask about any more are dropped.
            None => Status::NeverRecorded,
        }
    }

    /// Drops `version` once nothing can ask about it: it is not its event's
    /// current one and no queued wait refers to it.
    fn prune(&mut self, id: EventId, version: u64) {
        let current = self.handles.get(&id).map(|handle| handle.current);
        let removable = current != Some(version)
            && self
                .versions
                .get(&(id, version))
                .is_some_and(|v| v.waiters == 0);
        if removable {
            self.versions.remove(&(id, version));
        }
    }
}
