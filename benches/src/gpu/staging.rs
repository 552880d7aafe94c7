//! Rows of routes through host memory or a third GPU: staged, pageable upload, via.

use p2p_core::Location;
use p2p_move::{format_size, Mover, Route};

use super::{
    check_copy, check_len, move_prefix, Bench, BenchResult, Measured, DST, MID, SRC,
    STREAMING_TARGET_FROM,
};
use crate::raw_baselines as raw;
use crate::raw_ranges::DeviceRangeMut;
use crate::report::{Row, Show, Target};
use crate::timing::measure;

impl Bench {
    /// Our pipelined staging (peer copy disabled by policy for the pair, or
    /// not claimed in loopback mode) against raw pinned copies, sequential
    /// staging and ExLlamaV2's fallback through pageable memory.
    pub(super) fn staged(&mut self, mover: &Mover) -> BenchResult<()> {
        let route = self.plan_route("staged", mover, Location::Cuda(SRC), Location::Cuda(DST))?;
        if route != Route::Staged {
            return Err(format!(
                "expected a staged plan with peer copy broken for 0 -> 1, got {route}"
            )
            .into());
        }
        let label = "staged (pinned pipeline)";
        let len = check_len(self.max());
        let check = check_copy(
            self.driver.as_ref(),
            &self.streams[DST],
            label,
            &mut self.dst,
            &self.pattern[..len],
            |dst| move_prefix(mover, &self.src, dst, len),
        )?;
        let correct = self.push_check(check);
        self.check_staging_baselines(len)?;
        for size in self.sizes.clone() {
            let reps = self.reps(size);
            let driver = self.driver.as_ref();
            let (src_stream, dst_stream) = (&self.streams[SRC], &self.streams[DST]);
            let ours =
                measure(reps, || move_prefix(mover, &self.src, &mut self.dst, size))?.median();
            let sequential = measure(reps, || {
                raw::sequential_staging(
                    driver,
                    &mut self.dst,
                    &self.src,
                    &mut self.pinned,
                    size,
                    src_stream,
                    dst_stream,
                )
            })?
            .median();
            let download = measure(reps, || {
                raw::download(driver, &mut self.pinned, &self.src, size, src_stream)
            })?
            .median();
            let upload = measure(reps, || {
                raw::upload(driver, &mut self.dst, &self.pinned, size, dst_stream)
            })?
            .median();
            let host = &mut self.pageable[..size];
            let exllama = measure(reps, || {
                raw::pageable_round_trip(
                    driver,
                    &mut self.dst,
                    &self.src,
                    host,
                    size,
                    src_stream,
                    dst_stream,
                )
            })?
            .median();
            let entry = self.baselines.entry(size).or_default();
            entry.sequential_staging = Some(sequential);
            entry.download_src = Some(download);
            entry.upload_dst = Some(upload);
            entry.pageable_round_trip = Some(exllama);
            let baselines = [
                (
                    download.max(upload),
                    "min(raw pinned D2H, raw pinned H2D)",
                    staged_link_target(size),
                ),
                (
                    sequential,
                    "sequential staging: D2H, sync, H2D, sync",
                    staged_sequential_target(size),
                ),
                (
                    exllama,
                    "ExLlamaV2 fallback, raw: D2H to pageable, sync, H2D, sync",
                    staged_exllama_target(size),
                ),
            ];
            self.push_rows(
                &Measured::sized(label, size, ours, correct),
                baselines.map(|(time, name, target)| (time, name.to_string(), target)),
            );
        }
        Ok(())
    }

    /// The staged rows' raw baselines must deliver the bytes too: one that
    /// copied too little would make our route look slow.
    fn check_staging_baselines(&mut self, len: usize) -> BenchResult<()> {
        let driver = self.driver.clone();
        let (src_stream, dst_stream) = (&self.streams[SRC], &self.streams[DST]);
        let (src, pinned, host) = (&self.src, &mut self.pinned, &mut self.pageable);
        let sequential = check_copy(
            driver.as_ref(),
            dst_stream,
            "baseline: sequential staging",
            &mut self.dst,
            &self.pattern[..len],
            |dst| {
                raw::sequential_staging(
                    driver.as_ref(),
                    dst,
                    src,
                    pinned,
                    len,
                    src_stream,
                    dst_stream,
                )
                .map_err(Into::into)
            },
        )?;
        let exllama = check_copy(
            driver.as_ref(),
            dst_stream,
            "baseline: ExLlamaV2 fallback, raw",
            &mut self.dst,
            &self.pattern[..len],
            |dst| {
                raw::pageable_round_trip(
                    driver.as_ref(),
                    dst,
                    src,
                    host,
                    len,
                    src_stream,
                    dst_stream,
                )
                .map_err(Into::into)
            },
        )?;
        self.push_check(sequential);
        self.push_check(exllama);
        Ok(())
    }

    /// Our upload from a pageable `Vec` against a raw pinned upload.
    pub(super) fn pageable(&mut self, mover: &Mover) -> BenchResult<()> {
        let route = self.plan_route("pageable", mover, Location::Host, Location::Cuda(SRC))?;
        if route != Route::HostToDevice {
            return Err(format!("expected a host-to-device plan, got {route}").into());
        }
        let label = "host to device (pageable Vec)";
        let len = check_len(self.max());
        let check = check_copy(
            self.driver.as_ref(),
            &self.streams[SRC],
            label,
            &mut self.local_dst,
            &self.pattern[..len],
            |dst| {
                mover
                    .copy(&self.pattern[..len], &mut DeviceRangeMut::new(dst, len))
                    .map(drop)
            },
        )?;
        let correct = self.push_check(check);
        for size in self.sizes.clone() {
            let reps = self.reps(size);
            let source = &self.pattern[..size];
            let ours = measure(reps, || {
                mover
                    .copy(source, &mut DeviceRangeMut::new(&mut self.local_dst, size))
                    .map(drop)
            })?
            .median();
            let pinned = measure(reps, || {
                raw::upload(
                    self.driver.as_ref(),
                    &mut self.local_dst,
                    &self.pinned,
                    size,
                    &self.streams[SRC],
                )
            })?
            .median();
            self.baselines.entry(size).or_default().upload_src = Some(pinned);
            self.push_row(Row {
                route: label.into(),
                size: format_size(size),
                bytes: size,
                ours,
                baseline: pinned,
                baseline_name: "raw pinned cuMemcpyHtoDAsync + sync".into(),
                show: Show::for_size(size),
                target: (size >= STREAMING_TARGET_FROM).then(|| Target::speed(0.8, "pinned")),
                correct,
            });
        }
        Ok(())
    }

    /// Our hop through a third GPU against our staged route on the same pair.
    pub(super) fn via(&mut self, via: &Mover, staged: &Mover) -> BenchResult<()> {
        if self.loopback() {
            self.note(format!(
                "via rows skipped: {} has no third GPU",
                super::LOOPBACK_LABEL
            ));
            return Ok(());
        }
        if self.driver.device_count() <= MID {
            self.note(format!(
                "via rows skipped: they need 3 GPUs, this machine has {}",
                self.driver.device_count()
            ));
            return Ok(());
        }
        let route = self.plan_route("via", via, Location::Cuda(SRC), Location::Cuda(DST))?;
        let Route::Via { gpu } = route else {
            self.note(format!(
                "via rows skipped: the plan is {route}, not via a third GPU"
            ));
            return Ok(());
        };
        let label = format!("via cuda:{gpu}");
        let len = check_len(self.max());
        let check = check_copy(
            self.driver.as_ref(),
            &self.streams[DST],
            &label,
            &mut self.dst,
            &self.pattern[..len],
            |dst| move_prefix(via, &self.src, dst, len),
        )?;
        let correct = self.push_check(check);
        for size in self.sizes.clone() {
            let reps = self.reps(size);
            let ours = measure(reps, || move_prefix(via, &self.src, &mut self.dst, size))?.median();
            let baseline =
                measure(reps, || move_prefix(staged, &self.src, &mut self.dst, size))?.median();
            self.push_row(Row {
                route: label.clone(),
                size: format_size(size),
                bytes: size,
                ours,
                baseline,
                baseline_name: "our staged route, same pair".into(),
                show: Show::for_size(size),
                target: None,
                correct,
            });
        }
        Ok(())
    }
}

/// Staged against the link (the slower of raw pinned D2H and H2D): 0.9x from 64 MiB.
fn staged_link_target(size: usize) -> Option<Target> {
    (size >= STREAMING_TARGET_FROM).then(|| Target::speed(0.9, "min(D2H, H2D)"))
}

/// Staged against sequential staging: never slower (issue #12), 1.8x from
/// 64 MiB, where the two legs overlap fully (issue #3).
fn staged_sequential_target(size: usize) -> Option<Target> {
    Some(if size >= STREAMING_TARGET_FROM {
        Target::speed(1.8, "sequential")
    } else {
        Target::speed(1.0, "sequential")
    })
}

/// Staged against ExLlamaV2's fallback: 1.5x at 4 KiB, 64 KiB and 1 MiB,
/// 1.8x from 64 MiB.
fn staged_exllama_target(size: usize) -> Option<Target> {
    if size >= STREAMING_TARGET_FROM {
        Some(Target::speed(1.8, "ExLlamaV2"))
    } else if [4 << 10, 64 << 10, 1 << 20].contains(&size) {
        Some(Target::speed(1.5, "ExLlamaV2"))
    } else {
        None
    }
}
