//! What can be moved in one call: [`Movable`], for a tensor and for slices, arrays, `Vec`s and tuples of movables.
//!
//! A call lists every tensor of its argument in order ([`Movable::tensors`]),
//! moves them all as one batch, and gives the moved tensors back in the same
//! shape ([`Movable::rebuild`]): a tuple gives a tuple, a slice a `Vec`, an
//! array an array, and nesting works (`(Tensor, [Tensor; 2])`).

use tch::Tensor;

/// A tensor, or a collection of tensors, that a move takes and gives back in
/// the same shape.
///
/// Implemented for [`Tensor`], references to movables, slices (moved into a
/// `Vec`), `Vec`s, arrays and tuples of up to 8 movables. Implement it for
/// your own types (a key/value cache, a layer's activations) to move them in
/// one batched call: `tensors` lists the tensors in some order and `rebuild`
/// takes the moved ones back in that same order.
pub trait Movable {
    /// What a move gives back: the same shape, with moved tensors.
    type Output;

    /// Pushes every tensor of `self`, in order, onto `out`.
    fn tensors<'a>(&'a self, out: &mut Vec<&'a Tensor>);

    /// Builds the output from the moved tensors, taken from `moved` in the
    /// order `tensors` listed them. Returns `None` if `moved` runs out.
    fn rebuild(&self, moved: &mut dyn Iterator<Item = Tensor>) -> Option<Self::Output>;
}

impl Movable for Tensor {
    type Output = Tensor;

    fn tensors<'a>(&'a self, out: &mut Vec<&'a Tensor>) {
        out.push(self);
    }

    fn rebuild(&self, moved: &mut dyn Iterator<Item = Tensor>) -> Option<Tensor> {
        moved.next()
    }
}

impl<T: Movable + ?Sized> Movable for &T {
    type Output = T::Output;

    fn tensors<'a>(&'a self, out: &mut Vec<&'a Tensor>) {
        (**self).tensors(out);
    }

    fn rebuild(&self, moved: &mut dyn Iterator<Item = Tensor>) -> Option<T::Output> {
        (**self).rebuild(moved)
    }
}

impl<T: Movable> Movable for [T] {
    type Output = Vec<T::Output>;

    fn tensors<'a>(&'a self, out: &mut Vec<&'a Tensor>) {
        for item in self {
            item.tensors(out);
        }
    }

    fn rebuild(&self, moved: &mut dyn Iterator<Item = Tensor>) -> Option<Self::Output> {
        self.iter().map(|item| item.rebuild(moved)).collect()
    }
}

impl<T: Movable> Movable for Vec<T> {
    type Output = Vec<T::Output>;

    fn tensors<'a>(&'a self, out: &mut Vec<&'a Tensor>) {
        self.as_slice().tensors(out);
    }

    fn rebuild(&self, moved: &mut dyn Iterator<Item = Tensor>) -> Option<Self::Output> {
        self.as_slice().rebuild(moved)
    }
}

impl<T: Movable, const N: usize> Movable for [T; N] {
    type Output = [T::Output; N];

    fn tensors<'a>(&'a self, out: &mut Vec<&'a Tensor>) {
        self.as_slice().tensors(out);
    }

    fn rebuild(&self, moved: &mut dyn Iterator<Item = Tensor>) -> Option<Self::Output> {
        let items = self.as_slice().rebuild(moved)?;
        // N items went in, so N come out; `ok()` only to avoid a Debug bound.
        items.try_into().ok()
    }
}

macro_rules! movable_tuple {
    ($($name:ident . $index:tt),+) => {
        impl<$($name: Movable),+> Movable for ($($name,)+) {
            type Output = ($($name::Output,)+);

            fn tensors<'a>(&'a self, out: &mut Vec<&'a Tensor>) {
                $(self.$index.tensors(out);)+
            }

            fn rebuild(&self, moved: &mut dyn Iterator<Item = Tensor>) -> Option<Self::Output> {
                Some(($(self.$index.rebuild(moved)?,)+))
            }
        }
    };
}

movable_tuple!(A.0);
movable_tuple!(A.0, B.1);
movable_tuple!(A.0, B.1, C.2);
movable_tuple!(A.0, B.1, C.2, D.3);
movable_tuple!(A.0, B.1, C.2, D.3, E.4);
movable_tuple!(A.0, B.1, C.2, D.3, E.4, F.5);
movable_tuple!(A.0, B.1, C.2, D.3, E.4, F.5, G.6);
movable_tuple!(A.0, B.1, C.2, D.3, E.4, F.5, G.6, H.7);

/// Every tensor of `value`, in order.
pub(crate) fn list<T: Movable + ?Sized>(value: &T) -> Vec<&Tensor> {
    let mut out = Vec::new();
    value.tensors(&mut out);
    out
}
