//! Proves `Scaler::scale` allocates nothing once a geometry has been seen, for both filters and
//! every format family (planar I420, Gray8, packed 3 and 4 bytes). A counting global allocator
//! needs its own test binary, so this lives outside the library's unit tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use pipeline::frame::{Frame, PixelFormat};
use pipeline::preview::{fit_size, ResizeFilter, Scaler};

struct Counting;

thread_local! {
    /// Only allocations on the measuring thread count (the test harness has its own threads).
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Per thread, so tests running in parallel do not see each other's allocations.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    if ARMED.with(Cell::get) {
        ALLOCS.with(|n| n.set(n.get() + 1));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocations(f: impl FnOnce()) -> usize {
    ALLOCS.with(|n| n.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    ALLOCS.with(Cell::get)
}

fn textured(format: PixelFormat, w: usize, h: usize) -> Frame {
    let mut f = Frame::new(format, w, h);
    for (i, b) in f.data_mut().iter_mut().enumerate() {
        *b = (i.wrapping_mul(2_654_435_761) >> 7) as u8;
    }
    f
}

const FORMATS: [PixelFormat; 4] = [
    PixelFormat::I420,
    PixelFormat::Gray8,
    PixelFormat::Bgr24,
    PixelFormat::Rgba,
];

#[test]
fn scale_allocates_nothing_after_the_first_call_per_geometry() {
    for filter in [ResizeFilter::Area, ResizeFilter::Bilinear] {
        for format in FORMATS {
            // The camera-to-preview case, a strided crop of it, and an upscale.
            let big = textured(format, 1600, 1200);
            let (dw, dh) = fit_size(1600, 1200, 640, 360);
            let small = textured(format, 64, 48);
            let cases = [
                (big.view(), dw, dh),
                (big.view().crop_rows(100, 900), 400, 300),
                (small.view(), 150, 110),
            ];
            for (src, dw, dh) in cases {
                let mut scaler = Scaler::new(filter);
                let mut dst = Frame::new(PixelFormat::Gray8, 1, 1);
                // The first call builds the tables and grows the destination.
                scaler.scale(&src, &mut dst, dw, dh).unwrap();
                let n = allocations(|| {
                    for _ in 0..10 {
                        scaler.scale(&src, &mut dst, dw, dh).unwrap();
                    }
                });
                assert_eq!(
                    n,
                    0,
                    "{filter:?} {format:?} {}x{} -> {dw}x{dh}: {} allocations per frame",
                    src.width,
                    src.height,
                    n as f64 / 10.0
                );
            }
        }
    }
}
