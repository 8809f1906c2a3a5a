//! Proves the overlay's sprite mode allocates nothing per frame once warm. A counting global
//! allocator needs its own test binary, so this lives outside the library's unit tests.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use pipeline::frame::{Frame, PixelFormat};
use pipeline::overlay::{Hud, Overlay, OverlayMode, OverlayStyle};

struct Counting;

thread_local! {
    /// Only allocations on the measuring thread count (the test harness has its own threads).
    static ARMED: Cell<bool> = const { Cell::new(false) };
    /// Per thread, so tests running in parallel do not see each other's allocations.
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn frames(overlay: &mut Overlay, frame: &mut Frame, n: u64) {
    for i in 0..n {
        let hud = Hud {
            fps: 29.5 + (i % 7) as f32,
            frame_index: 1_000 + i,
            state: "streaming",
        };
        overlay
            .draw_gaze(frame, (i % 500) as f32 - 10.0, (i % 370) as f32, i % 3 != 0)
            .unwrap();
        overlay.draw_hud(frame, &hud).unwrap();
    }
}

#[test]
fn sprite_mode_steady_state_does_not_allocate() {
    for format in [PixelFormat::I420, PixelFormat::Bgr24, PixelFormat::Rgba] {
        let mut overlay = Overlay::new(OverlayMode::Sprite, OverlayStyle::default()).unwrap();
        let mut frame = Frame::new(format, 480, 360);
        frames(&mut overlay, &mut frame, 20); // warm-up fills the caches
        ALLOCS.with(|n| n.set(0));
        ARMED.with(|a| a.set(true));
        frames(&mut overlay, &mut frame, 500);
        ARMED.with(|a| a.set(false));
        assert_eq!(ALLOCS.with(Cell::get), 0, "{format:?}");
    }
}

#[test]
fn draw_mode_allocates_only_inside_ab_glyph() {
    // Documented, not desired: ab_glyph's outline + rasterizer allocate per glyph in draw mode.
    // The marker path alone must still be allocation-free.
    let mut overlay = Overlay::new(OverlayMode::Draw, OverlayStyle::default()).unwrap();
    let mut frame = Frame::new(PixelFormat::I420, 480, 360);
    frames(&mut overlay, &mut frame, 5);
    ALLOCS.with(|n| n.set(0));
    ARMED.with(|a| a.set(true));
    for i in 0..200 {
        overlay
            .draw_gaze(&mut frame, i as f32, 100.0, true)
            .unwrap();
    }
    ARMED.with(|a| a.set(false));
    assert_eq!(ALLOCS.with(Cell::get), 0);

    let hud = Hud {
        fps: 30.0,
        frame_index: 1,
        state: "streaming",
    };
    ARMED.with(|a| a.set(true));
    overlay.draw_hud(&mut frame, &hud).unwrap();
    ARMED.with(|a| a.set(false));
    eprintln!(
        "draw-mode HUD: {} allocations per frame (ab_glyph internals)",
        ALLOCS.with(Cell::get)
    );
}
