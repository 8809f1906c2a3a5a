//! Frame model: pixel formats, planar and packed buffers with strides, borrowed views and the
//! reusable frame pool. Every stage sees pixels only through these types.

use std::sync::Arc;

use serde::Serialize;

/// Pixel layouts the pipeline carries. Planar formats stay planar until a consumer needs packed
/// colour: that is the cheapest path for a decoder that hands out YUV 4:2:0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Planar YUV 4:2:0 (Y, U, V), chroma at half width and half height (rounded up).
    I420,
    /// One luma plane.
    Gray8,
    /// Packed 8-bit B, G, R.
    Bgr24,
    /// Packed 8-bit R, G, B, A.
    Rgba,
    /// Packed 8-bit B, G, R, A.
    Bgra,
}

impl PixelFormat {
    /// Number of planes in use.
    pub fn plane_count(self) -> usize {
        match self {
            PixelFormat::I420 => 3,
            _ => 1,
        }
    }

    /// Bytes per pixel within one plane (1 for every planar plane).
    pub fn bytes_per_pixel(self) -> usize {
        match self {
            PixelFormat::I420 | PixelFormat::Gray8 => 1,
            PixelFormat::Bgr24 => 3,
            PixelFormat::Rgba | PixelFormat::Bgra => 4,
        }
    }

    pub fn is_packed(self) -> bool {
        matches!(
            self,
            PixelFormat::Bgr24 | PixelFormat::Rgba | PixelFormat::Bgra
        )
    }

    /// Pixel dimensions of plane `i` for an image of `width` x `height`.
    pub fn plane_size(self, i: usize, width: usize, height: usize) -> (usize, usize) {
        match (self, i) {
            (PixelFormat::I420, 1 | 2) => (width.div_ceil(2), height.div_ceil(2)),
            (_, 0) => (width, height),
            _ => (0, 0),
        }
    }

    /// Bytes of a tightly packed image of this format.
    pub fn buffer_len(self, width: usize, height: usize) -> usize {
        (0..self.plane_count())
            .map(|i| {
                let (w, h) = self.plane_size(i, width, height);
                w * self.bytes_per_pixel() * h
            })
            .sum()
    }

    pub fn name(self) -> &'static str {
        match self {
            PixelFormat::I420 => "i420",
            PixelFormat::Gray8 => "gray",
            PixelFormat::Bgr24 => "bgr",
            PixelFormat::Rgba => "rgba",
            PixelFormat::Bgra => "bgra",
        }
    }
}

/// A borrowed plane: `height` rows of `width * bpp` bytes, `stride` bytes apart.
#[derive(Clone, Copy, Debug)]
pub struct Plane<'a> {
    pub data: &'a [u8],
    pub stride: usize,
    /// Width in pixels.
    pub width: usize,
    pub height: usize,
    /// Bytes per pixel (1 for planar planes).
    pub bpp: usize,
}

impl<'a> Plane<'a> {
    const EMPTY: Plane<'static> = Plane {
        data: &[],
        stride: 0,
        width: 0,
        height: 0,
        bpp: 1,
    };

    /// Bytes of one row that hold pixels.
    pub fn row_bytes(&self) -> usize {
        self.width * self.bpp
    }

    /// The pixel bytes of row `y`.
    pub fn row(&self, y: usize) -> &'a [u8] {
        let start = y * self.stride;
        &self.data[start..start + self.row_bytes()]
    }

    /// True when rows follow each other with no padding, so the plane is one slice.
    pub fn is_contiguous(&self) -> bool {
        self.stride == self.row_bytes() || self.height <= 1
    }

    /// Rows `top..top + height` of this plane, without copying.
    pub fn rows(&self, top: usize, height: usize) -> Plane<'a> {
        let top = top.min(self.height);
        let height = height.min(self.height - top);
        let start = (top * self.stride).min(self.data.len());
        Plane {
            data: &self.data[start..],
            stride: self.stride,
            width: self.width,
            height,
            bpp: self.bpp,
        }
    }

    /// The bytes from the first pixel to the last pixel, for APIs that take a slice plus stride.
    pub fn span(&self) -> &'a [u8] {
        if self.height == 0 {
            return &[];
        }
        let end = (self.height - 1) * self.stride + self.row_bytes();
        &self.data[..end]
    }
}

/// A mutable plane; same geometry as [`Plane`].
#[derive(Debug)]
pub struct PlaneMut<'a> {
    pub data: &'a mut [u8],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
    pub bpp: usize,
}

impl PlaneMut<'_> {
    pub fn row_bytes(&self) -> usize {
        self.width * self.bpp
    }

    pub fn row_mut(&mut self, y: usize) -> &mut [u8] {
        let start = y * self.stride;
        let n = self.row_bytes();
        &mut self.data[start..start + n]
    }

    pub fn as_plane(&self) -> Plane<'_> {
        Plane {
            data: self.data,
            stride: self.stride,
            width: self.width,
            height: self.height,
            bpp: self.bpp,
        }
    }

    /// Copies `src` row by row (geometries must match).
    pub fn copy_from(&mut self, src: &Plane<'_>) {
        debug_assert_eq!(src.row_bytes(), self.row_bytes());
        let n = self.row_bytes().min(src.row_bytes());
        for y in 0..self.height.min(src.height) {
            self.row_mut(y)[..n].copy_from_slice(&src.row(y)[..n]);
        }
    }

    pub fn fill(&mut self, value: u8) {
        for y in 0..self.height {
            self.row_mut(y).fill(value);
        }
    }
}

/// A borrowed, stride-aware image: a whole [`Frame`] or a region of one (a crop costs nothing).
#[derive(Clone, Copy, Debug)]
pub struct FrameView<'a> {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub planes: [Plane<'a>; 3],
}

impl<'a> FrameView<'a> {
    /// Wraps caller-owned tightly packed bytes (e.g. a decoder's or a test's buffer).
    pub fn from_packed_bytes(
        format: PixelFormat,
        width: usize,
        height: usize,
        data: &'a [u8],
    ) -> Result<Self, FrameError> {
        let need = format.buffer_len(width, height);
        if data.len() < need {
            return Err(FrameError::ShortBuffer {
                format,
                width,
                height,
                need,
                got: data.len(),
            });
        }
        let mut planes = [Plane::EMPTY; 3];
        let mut offset = 0;
        for (i, plane) in planes.iter_mut().enumerate().take(format.plane_count()) {
            let (w, h) = format.plane_size(i, width, height);
            let stride = w * format.bytes_per_pixel();
            *plane = Plane {
                data: &data[offset..offset + stride * h],
                stride,
                width: w,
                height: h,
                bpp: format.bytes_per_pixel(),
            };
            offset += stride * h;
        }
        Ok(FrameView {
            format,
            width,
            height,
            planes,
        })
    }

    pub fn plane(&self, i: usize) -> Plane<'a> {
        self.planes[i]
    }

    /// Rows `top..top + height` of the image, without copying. For I420 `top` and `height` are
    /// rounded down to even numbers so the chroma planes stay aligned with luma.
    pub fn crop_rows(&self, top: usize, height: usize) -> FrameView<'a> {
        let (top, height) = if self.format == PixelFormat::I420 {
            (top & !1, height & !1)
        } else {
            (top, height)
        };
        let top = top.min(self.height);
        let height = height.min(self.height - top);
        let mut planes = self.planes;
        for (i, plane) in planes
            .iter_mut()
            .enumerate()
            .take(self.format.plane_count())
        {
            *plane = if i == 0 || self.format != PixelFormat::I420 {
                self.planes[i].rows(top, height)
            } else {
                self.planes[i].rows(top / 2, height.div_ceil(2))
            };
        }
        FrameView {
            format: self.format,
            width: self.width,
            height,
            planes,
        }
    }

    /// True when every plane is one gap-free slice.
    pub fn is_contiguous(&self) -> bool {
        self.planes[..self.format.plane_count()]
            .iter()
            .all(Plane::is_contiguous)
    }
}

/// A handle to memory another library owns (a decoder's reference-counted picture, e.g. an
/// `AVFrame`), which a [`Frame`] keeps for its whole life and lends its planes from: decoded
/// pictures reach the stages without a copy (2.9 MB per 1600x1200 picture, about 0.3 ms, so
/// 5-10 % of the decode cost), and the library gets its buffer back when the frame is reset for
/// the next picture or dropped.
#[derive(Debug)]
pub struct LentHandle {
    handle: std::ptr::NonNull<std::ffi::c_void>,
    /// Gives the memory back, keeping the handle for the next picture (`av_frame_unref`).
    release: unsafe fn(*mut std::ffi::c_void),
    /// Frees the handle itself (`av_frame_free`); called once, when the frame is dropped.
    free: unsafe fn(*mut std::ffi::c_void),
}

impl LentHandle {
    /// # Safety
    /// `handle` must stay valid until `free` is called on it (once, by the frame that holds
    /// it); `release` and `free` must be safe to call from any thread, and `release` any
    /// number of times.
    pub unsafe fn new(
        handle: std::ptr::NonNull<std::ffi::c_void>,
        release: unsafe fn(*mut std::ffi::c_void),
        free: unsafe fn(*mut std::ffi::c_void),
    ) -> Self {
        LentHandle {
            handle,
            release,
            free,
        }
    }

    pub fn as_ptr(&self) -> *mut std::ffi::c_void {
        self.handle.as_ptr()
    }
}

/// Where a frame's planes are while it lends them: pointer and stride per plane.
#[derive(Clone, Copy, Debug)]
struct LentPlanes {
    ptrs: [*const u8; 3],
    strides: [usize; 3],
}

/// An owned image whose buffer is reused: [`Frame::reset`] reshapes it without allocating when
/// the existing capacity is enough, which is what keeps the steady state allocation-free. Its
/// planes are either its own buffer or lent by a decoder ([`Frame::lend`]); readers see the
/// same stride-aware [`Plane`]s either way.
#[derive(Debug)]
pub struct Frame {
    format: PixelFormat,
    width: usize,
    height: usize,
    offsets: [usize; 3],
    strides: [usize; 3],
    data: Vec<u8>,
    /// The handle the lent planes come from, kept across pictures.
    handle: Option<LentHandle>,
    lent: Option<LentPlanes>,
}

// SAFETY: lent planes are read-only memory that the handle keeps alive until `release`, which
// only runs through `&mut Frame` (reset, own, drop), so never while another thread reads
// them through `&Frame`; `LentHandle::new`'s contract makes release/free callable anywhere.
unsafe impl Send for Frame {}
// SAFETY: as above; `&Frame` only reads.
unsafe impl Sync for Frame {}

impl Clone for Frame {
    /// A clone owns its pixels (a lent picture is copied once).
    fn clone(&self) -> Self {
        let mut f = Frame::new(self.format, 0, 0);
        f.copy_from(&self.view());
        f
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        self.give_back();
        if let Some(h) = self.handle.take() {
            // SAFETY: the handle's contract (LentHandle::new): freed once, here.
            unsafe { (h.free)(h.handle.as_ptr()) };
        }
    }
}

impl Frame {
    pub fn new(format: PixelFormat, width: usize, height: usize) -> Self {
        let mut frame = Frame {
            format,
            width: 0,
            height: 0,
            offsets: [0; 3],
            strides: [0; 3],
            data: Vec::new(),
            handle: None,
            lent: None,
        };
        frame.reset(format, width, height);
        frame
    }

    /// Returns lent planes to their owner.
    fn give_back(&mut self) {
        if self.lent.take().is_some() {
            if let Some(h) = &self.handle {
                // SAFETY: the handle holds the lent memory; nobody reads it any more (we have
                // `&mut self`).
                unsafe { (h.release)(h.handle.as_ptr()) };
            }
        }
    }

    /// True while the planes are a decoder's buffer rather than this frame's own.
    pub fn is_lent(&self) -> bool {
        self.lent.is_some()
    }

    /// Makes this frame show planes another library owns, without copying them. `fill` gets
    /// the frame's handle (made by `make` the first time, kept afterwards) and must make it
    /// hold the memory (e.g. `av_frame_move_ref` into it); it returns the planes' pointers and
    /// strides. A previous picture's memory is given back first.
    ///
    /// # Safety
    /// After `fill`, for each plane `i` of `format` at `width` x `height`, `ptrs[i]` must point
    /// at `strides[i] * (rows - 1) + row_bytes` readable bytes that the handle keeps valid and
    /// unchanged until its `release` is called.
    pub unsafe fn lend(
        &mut self,
        format: PixelFormat,
        width: usize,
        height: usize,
        make: impl FnOnce() -> Option<LentHandle>,
        fill: impl FnOnce(*mut std::ffi::c_void) -> ([*const u8; 3], [usize; 3]),
    ) -> bool {
        self.give_back();
        if self.handle.is_none() {
            self.handle = make();
        }
        let Some(h) = &self.handle else {
            return false;
        };
        let (ptrs, strides) = fill(h.handle.as_ptr());
        self.format = format;
        self.width = width;
        self.height = height;
        self.lent = Some(LentPlanes { ptrs, strides });
        true
    }

    /// Reshapes the frame; contents are unspecified afterwards. Allocates only when the buffer
    /// must grow. Lent planes are given back.
    pub fn reset(&mut self, format: PixelFormat, width: usize, height: usize) {
        self.give_back();
        let bpp = format.bytes_per_pixel();
        let mut offset = 0;
        self.offsets = [0; 3];
        self.strides = [0; 3];
        for i in 0..format.plane_count() {
            let (w, h) = format.plane_size(i, width, height);
            self.offsets[i] = offset;
            self.strides[i] = w * bpp;
            offset += w * bpp * h;
        }
        self.format = format;
        self.width = width;
        self.height = height;
        if self.data.len() != offset {
            // resize within capacity does not allocate
            self.data.resize(offset, 0);
        }
    }

    pub fn format(&self) -> PixelFormat {
        self.format
    }
    pub fn width(&self) -> usize {
        self.width
    }
    pub fn height(&self) -> usize {
        self.height
    }
    /// All bytes of the frame's own buffer, planes back to back (empty while its planes are
    /// lent: read those through [`Frame::view`]).
    pub fn data(&self) -> &[u8] {
        if self.lent.is_some() {
            return &[];
        }
        &self.data
    }
    pub fn data_mut(&mut self) -> &mut [u8] {
        self.own();
        &mut self.data
    }

    /// Copies lent planes into the frame's own buffer (and gives them back), so they can be
    /// written; nothing happens to a frame that owns its pixels.
    fn own(&mut self) {
        let Some(l) = self.lent else { return };
        let (format, width, height) = (self.format, self.width, self.height);
        let mut owned = Frame {
            format,
            width: 0,
            height: 0,
            offsets: [0; 3],
            strides: [0; 3],
            data: std::mem::take(&mut self.data),
            handle: None,
            lent: None,
        };
        owned.reset(format, width, height);
        for (i, mut dst) in owned.planes_mut().into_iter().enumerate() {
            if i < format.plane_count() {
                dst.copy_from(&Self::lent_plane(&l, format, width, height, i));
            }
        }
        self.give_back();
        self.offsets = owned.offsets;
        self.strides = owned.strides;
        self.data = std::mem::take(&mut owned.data);
    }

    fn lent_plane(
        l: &LentPlanes,
        format: PixelFormat,
        width: usize,
        height: usize,
        i: usize,
    ) -> Plane<'_> {
        let (w, h) = format.plane_size(i, width, height);
        let bpp = format.bytes_per_pixel();
        let len = if h == 0 {
            0
        } else {
            l.strides[i] * (h - 1) + w * bpp
        };
        Plane {
            // SAFETY: `Frame::lend`'s contract: this many bytes stay readable while lent, and
            // the borrow of `l` (inside `&self`) keeps `give_back` from running meanwhile.
            data: unsafe { std::slice::from_raw_parts(l.ptrs[i], len) },
            stride: l.strides[i],
            width: w,
            height: h,
            bpp,
        }
    }
    pub fn capacity(&self) -> usize {
        self.data.capacity()
    }

    pub fn plane(&self, i: usize) -> Plane<'_> {
        if i >= self.format.plane_count() {
            return Plane::EMPTY;
        }
        if let Some(l) = &self.lent {
            return Self::lent_plane(l, self.format, self.width, self.height, i);
        }
        let (w, h) = self.format.plane_size(i, self.width, self.height);
        let len = self.strides[i] * h;
        Plane {
            data: &self.data[self.offsets[i]..self.offsets[i] + len],
            stride: self.strides[i],
            width: w,
            height: h,
            bpp: self.format.bytes_per_pixel(),
        }
    }

    pub fn view(&self) -> FrameView<'_> {
        FrameView {
            format: self.format,
            width: self.width,
            height: self.height,
            planes: [self.plane(0), self.plane(1), self.plane(2)],
        }
    }

    /// Every plane, mutably, at once (planes never overlap). A frame with lent planes copies
    /// them into its own buffer first.
    pub fn planes_mut(&mut self) -> [PlaneMut<'_>; 3] {
        self.own();
        let n = self.format.plane_count();
        let bpp = self.format.bytes_per_pixel();
        let mut sizes = [(0usize, 0usize); 3];
        for (i, size) in sizes.iter_mut().enumerate().take(n) {
            *size = self.format.plane_size(i, self.width, self.height);
        }
        let strides = self.strides;
        let len0 = strides[0] * sizes[0].1;
        let len1 = strides[1] * sizes[1].1;
        let (p0, rest) = self.data.split_at_mut(len0);
        let (p1, p2) = rest.split_at_mut(len1);
        [
            PlaneMut {
                data: p0,
                stride: strides[0],
                width: sizes[0].0,
                height: sizes[0].1,
                bpp,
            },
            PlaneMut {
                data: p1,
                stride: strides[1],
                width: sizes[1].0,
                height: sizes[1].1,
                bpp,
            },
            PlaneMut {
                data: p2,
                stride: strides[2],
                width: sizes[2].0,
                height: sizes[2].1,
                bpp,
            },
        ]
    }

    pub fn plane_mut(&mut self, i: usize) -> PlaneMut<'_> {
        let [p0, p1, p2] = self.planes_mut();
        match i {
            0 => p0,
            1 => p1,
            _ => p2,
        }
    }

    /// Makes this frame a tight copy of `src` (the plan's `np.ascontiguousarray`).
    pub fn copy_from(&mut self, src: &FrameView<'_>) {
        self.reset(src.format, src.width, src.height);
        let n = src.format.plane_count();
        for (i, mut dst) in self.planes_mut().into_iter().enumerate().take(n) {
            dst.copy_from(&src.planes[i]);
        }
    }
}

/// Frames from one producer stage, recycled once every consumer has dropped its `Arc`.
///
/// The pool is owned by the producing thread; consumers on other threads only hold clones of
/// the `Arc`. A slot is free again when its strong count is back to one, so recycling needs no
/// lock and no allocation. The first time it runs dry it allocates all of its expected
/// capacity at once, so a stage that knows how many frames can be in flight never grows its
/// pool mid-stream.
#[derive(Debug)]
pub struct FramePool {
    slots: Vec<Arc<Frame>>,
    capacity: usize,
    allocations: u64,
}

impl FramePool {
    /// `capacity` is the number of frames this producer can have in flight at once.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        FramePool {
            slots: Vec::with_capacity(capacity),
            capacity,
            allocations: 0,
        }
    }

    /// Takes a frame nobody else holds, reshapes it, lets `fill` write it and hands it out.
    /// Allocates only on first use (the whole capacity) or when consumers hold more frames
    /// than the capacity allows for.
    pub fn fill<E>(
        &mut self,
        format: PixelFormat,
        width: usize,
        height: usize,
        fill: impl FnOnce(&mut Frame) -> Result<(), E>,
    ) -> Result<Arc<Frame>, E> {
        let idx = self.free_slot(format, width, height);
        let slot = &mut self.slots[idx];
        let frame = Arc::get_mut(slot).expect("slot was checked to be unshared");
        frame.reset(format, width, height);
        fill(frame)?;
        Ok(Arc::clone(slot))
    }

    /// Takes a frame nobody else holds and lets `lend` point it at a decoder's planes
    /// ([`Frame::lend`]); frames made for this hold no pixel buffer of their own. `None` when
    /// `lend` declines (the caller then copies with [`FramePool::fill`]).
    pub fn lend(&mut self, lend: impl FnOnce(&mut Frame) -> bool) -> Option<Arc<Frame>> {
        let idx = self.free_slot(PixelFormat::I420, 0, 0);
        let slot = &mut self.slots[idx];
        let frame = Arc::get_mut(slot).expect("slot was checked to be unshared");
        lend(frame).then(|| Arc::clone(slot))
    }

    /// Index of a frame nobody else holds, growing the pool (with frames of this shape) when
    /// every one is in use.
    fn free_slot(&mut self, format: PixelFormat, width: usize, height: usize) -> usize {
        match self
            .slots
            .iter_mut()
            .position(|slot| Arc::get_mut(slot).is_some())
        {
            Some(i) => i,
            None => {
                let first_new = self.slots.len();
                let target = if first_new < self.capacity {
                    self.capacity
                } else {
                    first_new + 1
                };
                self.grow(target, format, width, height);
                first_new
            }
        }
    }

    fn grow(&mut self, frames: usize, format: PixelFormat, width: usize, height: usize) {
        while self.slots.len() < frames {
            self.allocations += 1;
            self.slots.push(Arc::new(Frame::new(format, width, height)));
        }
    }

    /// Makes sure at least `frames` buffers of this shape exist, so a pipeline that knows how
    /// many frames it can hold in flight never grows the pool mid-stream.
    pub fn preallocate(&mut self, frames: usize, format: PixelFormat, width: usize, height: usize) {
        for slot in self.slots.iter_mut() {
            if let Some(f) = Arc::get_mut(slot) {
                f.reset(format, width, height);
            }
        }
        self.capacity = self.capacity.max(frames);
        self.grow(frames, format, width, height);
    }

    /// Frames allocated so far: flat after warm-up in a healthy pipeline.
    pub fn allocations(&self) -> u64 {
        self.allocations
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("{format:?} {width}x{height} needs {need} bytes, buffer has {got}")]
    ShortBuffer {
        format: PixelFormat,
        width: usize,
        height: usize,
        need: usize,
        got: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i420_layout_rounds_chroma_up() {
        let f = Frame::new(PixelFormat::I420, 5, 3);
        assert_eq!(f.plane(0).width, 5);
        assert_eq!(f.plane(1).width, 3);
        assert_eq!(f.plane(1).height, 2);
        assert_eq!(f.data().len(), 15 + 6 + 6);
        assert_eq!(
            PixelFormat::I420.buffer_len(1600, 1200),
            1600 * 1200 * 3 / 2
        );
    }

    #[test]
    fn packed_planes_use_bpp() {
        let f = Frame::new(PixelFormat::Bgr24, 4, 2);
        assert_eq!(f.plane(0).row_bytes(), 12);
        assert_eq!(f.data().len(), 24);
        assert_eq!(f.plane(1).height, 0);
    }

    #[test]
    fn crop_rows_is_a_view_and_keeps_chroma_aligned() {
        let mut f = Frame::new(PixelFormat::I420, 4, 6);
        for (i, mut p) in f.planes_mut().into_iter().enumerate() {
            for y in 0..p.height {
                let v = (i * 100 + y) as u8;
                p.row_mut(y).fill(v);
            }
        }
        let v = f.view().crop_rows(2, 3); // rounds to top 2, height 2
        assert_eq!(v.height, 2);
        assert_eq!(v.plane(0).row(0)[0], 2);
        assert_eq!(v.plane(1).row(0)[0], 101);
        assert_eq!(v.plane(1).height, 1);
        assert!(std::ptr::eq(
            v.plane(0).data.as_ptr(),
            f.plane(0).data[2 * 4..].as_ptr()
        ));
    }

    #[test]
    fn copy_from_view_is_tight() {
        let mut src = Frame::new(PixelFormat::Gray8, 3, 4);
        src.data_mut()
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = i as u8);
        let view = src.view().crop_rows(1, 2);
        let mut dst = Frame::new(PixelFormat::Gray8, 1, 1);
        dst.copy_from(&view);
        assert_eq!(dst.data(), &[3, 4, 5, 6, 7, 8]);
    }

    #[test]
    fn short_buffer_is_an_error_not_a_panic() {
        let err = FrameView::from_packed_bytes(PixelFormat::I420, 4, 4, &[0; 10]).unwrap_err();
        assert!(matches!(err, FrameError::ShortBuffer { need: 24, .. }));
    }

    #[test]
    fn preallocated_pool_does_not_grow_up_to_its_size() {
        let mut pool = FramePool::new(2);
        pool.preallocate(3, PixelFormat::I420, 16, 16);
        assert_eq!(pool.allocations(), 3);
        let held: Vec<_> = (0..3)
            .map(|_| {
                pool.fill::<()>(PixelFormat::I420, 16, 16, |_| Ok(()))
                    .unwrap()
            })
            .collect();
        assert_eq!(pool.allocations(), 3);
        drop(held);
    }

    #[test]
    fn pool_recycles_once_consumers_drop() {
        let mut pool = FramePool::new(2);
        let a = pool
            .fill::<()>(PixelFormat::Gray8, 8, 8, |_| Ok(()))
            .unwrap();
        let b = pool
            .fill::<()>(PixelFormat::Gray8, 8, 8, |_| Ok(()))
            .unwrap();
        assert_eq!(pool.allocations(), 2);
        let a_ptr = Arc::as_ptr(&a);
        drop(a);
        let c = pool
            .fill::<()>(PixelFormat::Gray8, 8, 8, |_| Ok(()))
            .unwrap();
        assert_eq!(pool.allocations(), 2);
        assert_eq!(Arc::as_ptr(&c), a_ptr);
        drop((b, c));
    }

    #[test]
    fn pool_allocates_its_capacity_at_once_then_grows_one_by_one() {
        let mut pool = FramePool::new(3);
        let a = pool
            .fill::<()>(PixelFormat::Gray8, 4, 4, |_| Ok(()))
            .unwrap();
        assert_eq!(pool.allocations(), 3);
        let held: Vec<_> = (0..3)
            .map(|_| {
                pool.fill::<()>(PixelFormat::Gray8, 4, 4, |_| Ok(()))
                    .unwrap()
            })
            .collect();
        assert_eq!(pool.allocations(), 4, "one over capacity grows by one");
        drop((a, held));
    }
}
