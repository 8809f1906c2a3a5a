//! Proves both overlay modes allocate nothing per frame straight after `Overlay::new` (no
//! warm-up frames): printable ASCII glyphs and the worn/not-worn marker sprites are pre-warmed,
//! and draw mode rasterizes cached outlines with one reused rasterizer. A counting global
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
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            ALLOCS.with(|n| n.set(n.get() + 1));
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc_zeroed(layout) }
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

const STATES: [&str; 3] = ["streaming", "streaming (repeat)", "recording"];

/// `n` frames with HUD text that changes every frame (fps, a frame index running through many
/// digit counts and combinations, rotating states) and the marker alternating worn / not worn
/// while it moves, partly off the frame.
fn frames(overlay: &mut Overlay, frame: &mut Frame, n: u64) {
    for i in 0..n {
        let hud = Hud {
            fps: (i % 1000) as f32 * 0.37 + (i % 7) as f32,
            // 0, 1, ..., then squares times a prime: every digit, 1 to 11 digits long
            frame_index: i * i * 7919 + i,
            state: STATES[(i / 3 % 3) as usize],
        };
        overlay
            .draw_gaze(frame, (i % 500) as f32 - 10.0, (i % 370) as f32, i % 2 == 0)
            .unwrap();
        overlay.draw_hud(frame, &hud).unwrap();
    }
}

fn assert_no_alloc_from_first_frame(mode: OverlayMode) {
    for format in [PixelFormat::I420, PixelFormat::Bgr24] {
        for background in [true, false] {
            let mut overlay = Overlay::new(mode, OverlayStyle::default()).unwrap();
            overlay.set_hud_background(background);
            let mut frame = Frame::new(format, 480, 360);
            ALLOCS.with(|n| n.set(0));
            ARMED.with(|a| a.set(true));
            frames(&mut overlay, &mut frame, 2000);
            ARMED.with(|a| a.set(false));
            let allocs = ALLOCS.with(Cell::get);
            assert_eq!(allocs, 0, "{mode:?} {format:?} box={background}");
            let stats = overlay.cache_stats();
            assert_eq!(stats.glyph_misses, 0, "{mode:?}: ASCII is pre-warmed");
            assert_eq!(
                stats.misses, 0,
                "{mode:?}: both marker colours are pre-warmed"
            );
        }
    }
}

#[test]
fn sprite_mode_does_not_allocate_from_the_first_frame() {
    assert_no_alloc_from_first_frame(OverlayMode::Sprite);
}

#[test]
fn draw_mode_does_not_allocate_from_the_first_frame() {
    assert_no_alloc_from_first_frame(OverlayMode::Draw);
}

#[test]
fn restyle_prewarms_too() {
    for mode in [OverlayMode::Sprite, OverlayMode::Draw] {
        let mut overlay = Overlay::new(mode, OverlayStyle::default()).unwrap();
        overlay
            .set_style(OverlayStyle {
                radius: 17,
                hud_px: 22.0,
                ..OverlayStyle::default()
            })
            .unwrap();
        let mut frame = Frame::new(PixelFormat::I420, 480, 360);
        ALLOCS.with(|n| n.set(0));
        ARMED.with(|a| a.set(true));
        frames(&mut overlay, &mut frame, 300);
        ARMED.with(|a| a.set(false));
        assert_eq!(ALLOCS.with(Cell::get), 0, "{mode:?}");
    }
}

/// The counter is live: a character outside printable ASCII is cached lazily, so its first
/// frame allocates and the following ones do not.
#[test]
fn non_ascii_allocates_once_then_never() {
    for mode in [OverlayMode::Sprite, OverlayMode::Draw] {
        let mut overlay = Overlay::new(mode, OverlayStyle::default()).unwrap();
        let mut frame = Frame::new(PixelFormat::Bgr24, 480, 360);
        let hud = Hud {
            fps: 30.0,
            frame_index: 7,
            state: "gespeichert \u{e4}\u{f6}\u{fc}",
        };
        ALLOCS.with(|n| n.set(0));
        ARMED.with(|a| a.set(true));
        overlay.draw_hud(&mut frame, &hud).unwrap();
        ARMED.with(|a| a.set(false));
        assert!(ALLOCS.with(Cell::get) > 0, "{mode:?}: counter not counting");
        ALLOCS.with(|n| n.set(0));
        ARMED.with(|a| a.set(true));
        for _ in 0..50 {
            overlay.draw_hud(&mut frame, &hud).unwrap();
        }
        ARMED.with(|a| a.set(false));
        assert_eq!(ALLOCS.with(Cell::get), 0, "{mode:?}");
    }
}
