//! Getting tensors ready to move: the checks, contiguous sources, and destinations allocated by PyTorch (small ones packed).
//!
//! Decisions:
//! * Every tensor of a call is checked before anything is allocated or
//!   copied, so a call that fails leaves everything as it was.
//! * A source that is not contiguous, or carries PyTorch's lazy conjugate or
//!   negative bit, is materialised on its own device first (`resolve_conj`,
//!   `resolve_neg`, `contiguous`, queued on that device's current stream);
//!   the result is contiguous, with the same shape, dtype and values as
//!   `Tensor::to_device` gives.
//! * Destinations are allocated by PyTorch (`Tensor::empty` on the
//!   destination device), so they belong to its allocator like any tensor.
//! * Packing: small tensors of one call may share destination allocations;
//!   why and how is documented at `TchMover::with_packing`.

use tch::{Device, Kind, Tensor};

use crate::error::{device_name, is_out_of_memory, Error, Result, TensorProblem};

/// Tensors of at most this many bytes may be packed with others.
pub const PACK_MAX_TENSOR_BYTES: usize = 256 << 10;
/// The most bytes one pack holds.
pub const PACK_BYTES: usize = 1 << 20;
/// Offsets of tensors in a pack are multiples of this (every element size divides it).
pub const PACK_ALIGN_BYTES: usize = 256;

/// One source tensor of a call, checked.
#[derive(Debug)]
pub(crate) struct Source<'a> {
    /// Position in the call.
    pub(crate) index: usize,
    pub(crate) tensor: &'a Tensor,
    pub(crate) device: Device,
    pub(crate) kind: Kind,
    pub(crate) shape: Vec<i64>,
    pub(crate) bytes: usize,
}

/// Checks that `tensor` is one this crate can move and reads what the move needs.
pub(crate) fn inspect(index: usize, tensor: &Tensor) -> Result<Source<'_>> {
    let unsupported = |problem| Error::UnsupportedTensor { index, problem };
    if !tensor.defined() {
        return Err(unsupported(TensorProblem::Undefined));
    }
    // 0 for strided tensors; sparse layouts have sparse dimensions, and the
    // others (MKL-DNN, ...) refuse the question.
    match tensor.f_sparse_dim() {
        Ok(0) => {}
        Ok(_) => return Err(unsupported(TensorProblem::Sparse)),
        Err(err) => return Err(unsupported(TensorProblem::NotStrided(err))),
    }
    let kind = tensor
        .f_kind()
        .map_err(|err| unsupported(TensorProblem::UnnamedKind(err)))?;
    let device = tensor.device();
    match device {
        Device::Cpu | Device::Cuda(_) => {}
        other => return Err(Error::UnsupportedDevice { device: other }),
    }
    let shape = tensor.size();
    let numel: usize = shape.iter().map(|&d| d.max(0) as usize).product();
    Ok(Source {
        index,
        tensor,
        device,
        kind,
        shape,
        bytes: numel * kind.elt_size_in_bytes(),
    })
}

/// Quantized tensors carry their scale and zero point outside their bytes;
/// they are moved by PyTorch through host memory instead (see `TchMover`).
pub(crate) fn is_quantized(kind: Kind) -> bool {
    matches!(kind, Kind::QInt8 | Kind::QUInt8 | Kind::QInt32)
}

/// `None` when `source` itself holds the bytes to copy (contiguous, no lazy
/// bit), else a contiguous, resolved copy made on its own device.
pub(crate) fn materialise(source: &Source<'_>) -> Result<Option<Tensor>> {
    let tensor = source.tensor;
    let conj = tensor.f_is_conj().unwrap_or(false);
    let neg = tensor.f_is_neg().unwrap_or(false);
    if !conj && !neg && tensor.is_contiguous() {
        return Ok(None);
    }
    let fail = |err: tch::TchError| {
        torch_failure(
            source.device,
            source.bytes,
            source.kind,
            "making the source contiguous",
            err,
        )
    };
    let mut out = tensor.shallow_clone();
    if conj {
        out = out.f_resolve_conj().map_err(fail)?;
    }
    if neg {
        out = out.f_resolve_neg().map_err(fail)?;
    }
    // `contiguous` returns the tensor itself when it already is.
    out.f_contiguous().map(Some).map_err(fail)
}

/// Allocates a destination on `to` for each source, in order. With
/// `packing`, small tensors share allocations (module docs).
pub(crate) fn allocate(sources: &[&Source<'_>], to: Device, packing: bool) -> Result<Vec<Tensor>> {
    let mut out: Vec<Option<Tensor>> = (0..sources.len()).map(|_| None).collect();
    if packing && sources.len() > 1 {
        for (kind, members) in packable_groups(sources) {
            for pack in split_into_packs(sources, &members) {
                let views = allocate_pack(sources, &pack, kind, to)?;
                for (member, view) in pack.members.iter().zip(views) {
                    out[*member] = Some(view);
                }
            }
        }
    }
    for (slot, source) in out.iter_mut().zip(sources) {
        if slot.is_none() {
            let tensor =
                Tensor::f_empty(source.shape.as_slice(), (source.kind, to)).map_err(|err| {
                    torch_failure(
                        to,
                        source.bytes,
                        source.kind,
                        "allocating the destination",
                        err,
                    )
                })?;
            *slot = Some(tensor);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

/// Indices of packable sources, grouped by dtype, in order of first appearance.
fn packable_groups(sources: &[&Source<'_>]) -> Vec<(Kind, Vec<usize>)> {
    let mut groups: Vec<(Kind, Vec<usize>)> = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        if source.bytes == 0 || source.bytes > PACK_MAX_TENSOR_BYTES {
            continue;
        }
        match groups.iter_mut().find(|(kind, _)| *kind == source.kind) {
            Some((_, members)) => members.push(i),
            None => groups.push((source.kind, vec![i])),
        }
    }
    // A pack of one saves nothing.
    groups.retain(|(_, members)| members.len() > 1);
    groups
}

/// One shared allocation: which sources it holds, at which byte offsets.
#[derive(Debug, PartialEq)]
struct Pack {
    members: Vec<usize>,
    offsets: Vec<usize>,
    bytes: usize,
}

fn split_into_packs(sources: &[&Source<'_>], members: &[usize]) -> Vec<Pack> {
    let mut packs: Vec<Pack> = Vec::new();
    let mut current = Pack {
        members: Vec::new(),
        offsets: Vec::new(),
        bytes: 0,
    };
    for &member in members {
        let len = sources[member].bytes;
        let offset = current.bytes.next_multiple_of(PACK_ALIGN_BYTES);
        if !current.members.is_empty() && offset + len > PACK_BYTES {
            packs.push(std::mem::replace(
                &mut current,
                Pack {
                    members: Vec::new(),
                    offsets: Vec::new(),
                    bytes: 0,
                },
            ));
            current.members.push(member);
            current.offsets.push(0);
            current.bytes = len;
        } else {
            current.members.push(member);
            current.offsets.push(offset);
            current.bytes = offset + len;
        }
    }
    if !current.members.is_empty() {
        packs.push(current);
    }
    packs
}

/// One allocation for the pack, and a contiguous view of it per member.
///
/// Packs of 1-D tensors (the common case of many small tensors) are cut in
/// one call, `unsafe_split_with_sizes`, whose pieces are plain tensors that
/// share the storage without being tracked as views by autograd (the results
/// track no gradients anyway); others get an `as_strided` view each.
fn allocate_pack(
    sources: &[&Source<'_>],
    pack: &Pack,
    kind: Kind,
    to: Device,
) -> Result<Vec<Tensor>> {
    let element = kind.elt_size_in_bytes();
    let elements = pack.bytes.div_ceil(element) as i64;
    let storage = Tensor::f_empty([elements], (kind, to))
        .map_err(|err| torch_failure(to, pack.bytes, kind, "allocating the destination", err))?;
    let view_failure = |err| Error::Torch {
        action: format!("making a view of a destination pack on {}", device_name(to)),
        source: err,
    };
    let lengths: Vec<usize> = pack.members.iter().map(|&m| sources[m].bytes).collect();
    if pack.members.iter().all(|&m| sources[m].shape.len() == 1) {
        let (pieces, keep) = split_pieces(&pack.offsets, &lengths, element);
        let split = storage
            .f_unsafe_split_with_sizes(pieces.as_slice(), 0)
            .map_err(view_failure)?;
        return Ok(split
            .into_iter()
            .zip(keep)
            .filter_map(|(piece, keep)| keep.then_some(piece))
            .collect());
    }
    pack.members
        .iter()
        .zip(&pack.offsets)
        .map(|(&member, &offset)| {
            let shape = &sources[member].shape;
            storage
                .f_as_strided(
                    shape.as_slice(),
                    contiguous_strides(shape).as_slice(),
                    (offset / element) as i64,
                )
                .map_err(view_failure)
        })
        .collect()
}

/// Sizes, in elements, that cut a pack into its members and the padding
/// between them, and which of the pieces are members.
fn split_pieces(offsets: &[usize], lengths: &[usize], element: usize) -> (Vec<i64>, Vec<bool>) {
    let mut sizes = Vec::with_capacity(2 * offsets.len());
    let mut keep = Vec::with_capacity(2 * offsets.len());
    let mut cursor = 0;
    for (&offset, &len) in offsets.iter().zip(lengths) {
        if offset > cursor {
            sizes.push(((offset - cursor) / element) as i64);
            keep.push(false);
        }
        sizes.push((len / element) as i64);
        keep.push(true);
        cursor = offset + len;
    }
    (sizes, keep)
}

/// Row-major strides of a contiguous tensor of `shape`.
fn contiguous_strides(shape: &[i64]) -> Vec<i64> {
    let mut strides = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1].max(1);
    }
    strides
}

/// A failed PyTorch call: out of memory if PyTorch says so, else `Torch`.
pub(crate) fn torch_failure(
    device: Device,
    bytes: usize,
    kind: Kind,
    action: &str,
    err: tch::TchError,
) -> Error {
    if is_out_of_memory(&err.to_string()) {
        Error::OutOfMemory {
            device,
            bytes,
            kind,
            source: err,
        }
    } else {
        Error::Torch {
            action: format!("{action} on {}", device_name(device)),
            source: err,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(tensor: &Tensor, bytes: usize, kind: Kind) -> Source<'_> {
        Source {
            index: 0,
            tensor,
            device: Device::Cpu,
            kind,
            shape: vec![bytes as i64],
            bytes,
        }
    }

    #[test]
    fn strides_are_row_major() {
        assert_eq!(contiguous_strides(&[2, 3, 4]), vec![12, 4, 1]);
        assert_eq!(contiguous_strides(&[5]), vec![1]);
        assert!(contiguous_strides(&[]).is_empty());
    }

    #[test]
    fn packs_small_tensors_of_one_dtype_aligned_and_bounded() {
        let t = Tensor::new();
        let sizes = [
            100usize,
            300,
            PACK_MAX_TENSOR_BYTES,
            0,
            PACK_MAX_TENSOR_BYTES + 1,
            256,
            16 << 10,
        ];
        let sources: Vec<Source<'_>> = sizes.iter().map(|&b| source(&t, b, Kind::Uint8)).collect();
        let refs: Vec<&Source<'_>> = sources.iter().collect();
        let groups = packable_groups(&refs);
        // 0 bytes and over the limit are not packed.
        assert_eq!(groups, vec![(Kind::Uint8, vec![0, 1, 2, 5, 6])]);
        let packs = split_into_packs(&refs, &groups[0].1);
        assert_eq!(packs[0].members, vec![0, 1, 2, 5, 6]);
        assert_eq!(
            packs[0].offsets,
            vec![
                0,
                256,
                768,
                768 + PACK_MAX_TENSOR_BYTES,
                1024 + PACK_MAX_TENSOR_BYTES
            ]
        );

        let many: Vec<Source<'_>> = (0..256)
            .map(|_| source(&t, 16 << 10, Kind::Float))
            .collect();
        let refs: Vec<&Source<'_>> = many.iter().collect();
        let groups = packable_groups(&refs);
        let packs = split_into_packs(&refs, &groups[0].1);
        assert_eq!(packs.len(), 4);
        for pack in &packs {
            assert!(pack.bytes <= PACK_BYTES);
            assert!(pack.offsets.iter().all(|o| o % PACK_ALIGN_BYTES == 0));
        }
        let packed: usize = packs.iter().map(|p| p.members.len()).sum();
        assert_eq!(packed, 256);
    }

    #[test]
    fn split_pieces_cover_members_and_padding() {
        let (sizes, keep) = split_pieces(&[0, 256, 768], &[100, 512, 64], 4);
        assert_eq!(sizes, vec![25, 39, 128, 16]);
        assert_eq!(keep, vec![true, false, true, true]);
    }

    #[test]
    fn packs_are_cut_into_disjoint_views_of_the_right_shape() {
        let a = Tensor::arange(10, (Kind::Float, Device::Cpu));
        let b = Tensor::arange(64, (Kind::Float, Device::Cpu)).reshape([8, 8]);
        let c = Tensor::arange(3, (Kind::Float, Device::Cpu));
        for members in [vec![&a, &c], vec![&a, &b, &c]] {
            let sources: Vec<Source<'_>> = members
                .iter()
                .enumerate()
                .map(|(i, t)| inspect(i, t).unwrap())
                .collect();
            let refs: Vec<&Source<'_>> = sources.iter().collect();
            let out = allocate(&refs, Device::Cpu, true).unwrap();
            // CPU allocations are 64-byte aligned (CUDA ones 512): offsets
            // within the pack are what packing aligns.
            let base = out[0].data_ptr() as usize;
            for (got, src) in out.iter().zip(&members) {
                assert_eq!(got.size(), src.size());
                assert!(got.is_contiguous());
                assert_eq!((got.data_ptr() as usize - base) % PACK_ALIGN_BYTES, 0);
            }
            let mut first = out[0].shallow_clone();
            let _ = first.fill_(1.0);
            for other in &out[1..] {
                let _ = other.shallow_clone().fill_(2.0);
            }
            assert_eq!(out[0].sum(Kind::Float).double_value(&[]), 10.0);
            let starts: Vec<usize> = out.iter().map(|t| t.data_ptr() as usize).collect();
            assert!(starts.windows(2).all(|w| w[1] > w[0]), "{starts:?}");
        }
    }

    #[test]
    fn dtypes_are_packed_apart_and_singletons_not_at_all() {
        let t = Tensor::new();
        let sources = [
            source(&t, 64, Kind::Float),
            source(&t, 64, Kind::Half),
            source(&t, 64, Kind::Float),
        ];
        let refs: Vec<&Source<'_>> = sources.iter().collect();
        assert_eq!(packable_groups(&refs), vec![(Kind::Float, vec![0, 2])]);
    }
}
