use std::path::PathBuf;

use super::*;

const FORMATS: [PixelFormat; 4] = [
    PixelFormat::I420,
    PixelFormat::Bgr24,
    PixelFormat::Rgba,
    PixelFormat::Bgra,
];

/// A deterministic, non-flat background so blending errors show.
fn background(format: PixelFormat, w: usize, h: usize) -> Frame {
    let mut f = Frame::new(format, w, h);
    for (i, b) in f.data_mut().iter_mut().enumerate() {
        *b = ((i * 37 + i / 7) % 251) as u8;
    }
    f
}

fn max_diff(a: &Frame, b: &Frame) -> u8 {
    assert_eq!(a.data().len(), b.data().len());
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0)
}

fn render(
    mode: OverlayMode,
    style: &OverlayStyle,
    format: PixelFormat,
    (w, h): (usize, usize),
    draw: impl Fn(&mut Overlay, &mut Frame),
) -> Frame {
    let mut overlay = Overlay::new(mode, style.clone()).unwrap();
    let mut frame = background(format, w, h);
    draw(&mut overlay, &mut frame);
    // second pass through the same overlay: sprite mode now hits its cache
    let mut again = background(format, w, h);
    draw(&mut overlay, &mut again);
    assert_eq!(frame.data(), again.data(), "{mode:?} not repeatable");
    frame
}

fn positions(w: f32, h: f32) -> Vec<(f32, f32, Option<bool>)> {
    // (x, y, whether something must be drawn; None where it depends on the shape: a cross
    // centred off a corner misses the frame, a circle does not)
    vec![
        (w / 2.0 + 0.3, h / 2.0 - 0.4, Some(true)),
        (-3.0, h / 2.0, Some(true)),
        (w + 3.0, h / 2.0, Some(true)),
        (w / 2.0, -4.0, Some(true)),
        (w / 2.0, h + 2.0, Some(true)),
        (-1.0, -1.0, Some(true)),
        (w, -1.0, Some(true)),
        (-1.0, h, Some(true)),
        (w, h, Some(true)),
        (-2.0, -2.0, None),
        (w + 1.0, -3.0, None),
        (-5.0, h + 5.0, None),
        (w + 2.0, h + 2.0, None),
        (w - 0.5, h - 0.5, Some(true)),
        (-100.0, 10.0, Some(false)),
        (10.0, 1e9, Some(false)),
        (w + 40.0, h / 2.0, Some(false)),
    ]
}

#[test]
fn golden_draw_equals_sprite_for_markers() {
    for (w, h) in [(64usize, 48usize), (61, 45)] {
        for format in FORMATS {
            for shape in [MarkerShape::Circle, MarkerShape::Cross] {
                let style = OverlayStyle {
                    shape,
                    ..OverlayStyle::default()
                };
                for worn in [true, false] {
                    for (x, y, drawn) in positions(w as f32, h as f32) {
                        let draw_one = |o: &mut Overlay, f: &mut Frame| {
                            o.draw_gaze(f, x, y, worn).unwrap();
                        };
                        let a = render(OverlayMode::Draw, &style, format, (w, h), draw_one);
                        let b = render(OverlayMode::Sprite, &style, format, (w, h), draw_one);
                        let ctx = format!("{format:?} {w}x{h} {shape:?} worn={worn} at ({x},{y})");
                        assert!(max_diff(&a, &b) <= 1, "{ctx}");
                        let bg = background(format, w, h);
                        if let Some(drawn) = drawn {
                            assert_eq!(a.data() != bg.data(), drawn, "{ctx}: drawn?");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn golden_draw_equals_sprite_for_hud() {
    for format in FORMATS {
        for (w, h) in [(160usize, 40usize), (33, 9)] {
            for background_box in [true, false] {
                let draw_hud = |o: &mut Overlay, f: &mut Frame| {
                    o.set_hud_background(background_box);
                    let hud = Hud {
                        fps: 29.97,
                        frame_index: 1234,
                        state: "streaming",
                    };
                    o.draw_hud(f, &hud).unwrap();
                    o.draw_gaze(f, 20.0, 5.0, true).unwrap();
                };
                let style = OverlayStyle::default();
                let a = render(OverlayMode::Draw, &style, format, (w, h), draw_hud);
                let b = render(OverlayMode::Sprite, &style, format, (w, h), draw_hud);
                assert!(max_diff(&a, &b) <= 1, "{format:?} {w}x{h}");
                assert_ne!(a.data(), background(format, w, h).data());
            }
        }
    }
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden/overlay_96x64_bgr24.ppm")
}

/// Binary PPM (RGB) so the golden image opens in any viewer.
fn to_ppm(f: &Frame) -> Vec<u8> {
    let mut out = format!("P6\n{} {}\n255\n", f.width(), f.height()).into_bytes();
    for px in f.data().chunks_exact(3) {
        out.extend_from_slice(&[px[2], px[1], px[0]]);
    }
    out
}

#[test]
fn golden_image_file() {
    let style = OverlayStyle::default();
    let frames: Vec<Frame> = [OverlayMode::Draw, OverlayMode::Sprite]
        .into_iter()
        .map(|mode| {
            render(mode, &style, PixelFormat::Bgr24, (96, 64), |o, f| {
                let hud = Hud {
                    fps: 30.0,
                    frame_index: 1234,
                    state: "streaming",
                };
                o.draw_hud(f, &hud).unwrap();
                o.draw_gaze(f, 20.3, 30.7, true).unwrap();
                o.draw_gaze(f, 90.0, 60.0, false).unwrap();
            })
        })
        .collect();
    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, to_ppm(&frames[1])).unwrap();
    }
    let golden = std::fs::read(&path).expect("golden file missing: run with UPDATE_GOLDEN=1");
    for (frame, mode) in frames.iter().zip(["draw", "sprite"]) {
        let got = to_ppm(frame);
        assert_eq!(got.len(), golden.len(), "{mode}: size");
        let worst = got
            .iter()
            .zip(&golden)
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap_or(0);
        assert!(worst <= 1, "{mode}: differs from golden by {worst}");
    }
}

#[test]
fn marker_cache_is_bounded_lru_and_hits() {
    let mut o = Overlay::new(OverlayMode::Sprite, OverlayStyle::default()).unwrap();
    // pre-warmed: worn and not-worn sprites, neither a hit nor a miss
    let s = o.cache_stats();
    assert_eq!((s.hits, s.misses, s.entries), (0, 0, 2));
    let mut f = background(PixelFormat::Bgr24, 64, 48);
    for r in 1..=100 {
        let style = OverlayStyle {
            radius: r,
            ..OverlayStyle::default()
        };
        o.set_style(style).unwrap();
        o.draw_gaze(&mut f, 30.0, 20.0, r % 2 == 0).unwrap();
        assert!(o.cache_stats().entries <= MARKER_CACHE_CAP);
    }
    let s = o.cache_stats();
    assert_eq!((s.misses, s.hits, s.entries), (0, 100, MARKER_CACHE_CAP));
    // radius 100 is cached in both colours: 50 redraws are all hits
    for i in 0..50 {
        o.draw_gaze(&mut f, 30.0, 20.0, i % 2 == 0).unwrap();
    }
    assert_eq!((o.cache_stats().hits, o.cache_stats().misses), (150, 0));
    // switching back to a cached style keeps hitting
    o.set_style(OverlayStyle {
        radius: 95,
        ..OverlayStyle::default()
    })
    .unwrap();
    o.draw_gaze(&mut f, 30.0, 20.0, false).unwrap();
    assert_eq!((o.cache_stats().hits, o.cache_stats().misses), (151, 0));
}

#[test]
fn marker_cache_evicts_least_recently_used() {
    let key = |radius| marker::MarkerKey {
        shape: MarkerShape::Circle,
        radius,
        thickness: 2,
        dot_radius: 2,
        colour: Rgb { r: 1, g: 2, b: 3 },
    };
    let mut c = marker::MarkerCache::new();
    for r in 1..=MARKER_CACHE_CAP as u32 {
        c.get(key(r));
    }
    assert_eq!(
        (c.hits, c.misses, c.len()),
        (0, MARKER_CACHE_CAP as u64, MARKER_CACHE_CAP)
    );
    // touch 1, add a new key -> 2 (least recent) goes, 1 stays
    c.get(key(1));
    c.get(key(100));
    assert_eq!(c.len(), MARKER_CACHE_CAP);
    let misses = c.misses;
    c.get(key(1));
    assert_eq!(c.misses, misses, "1 was evicted");
    c.get(key(2));
    assert_eq!(c.misses, misses + 1, "2 was kept");
    // warming counts nothing but makes the key most recent
    let (hits, misses) = (c.hits, c.misses);
    c.warm(key(3));
    c.warm(key(3));
    assert_eq!((c.hits, c.misses), (hits, misses));
}

#[test]
fn draw_mode_keeps_no_marker_sprites() {
    let mut o = Overlay::new(OverlayMode::Draw, OverlayStyle::default()).unwrap();
    let mut f = background(PixelFormat::Bgr24, 64, 48);
    o.draw_gaze(&mut f, 30.0, 20.0, true).unwrap();
    o.draw_gaze(&mut f, 30.0, 20.0, false).unwrap();
    let s = o.cache_stats();
    assert_eq!((s.hits, s.misses, s.entries), (0, 0, 0));
}

#[test]
fn glyph_cache_prewarms_ascii_and_bounds_the_rest() {
    const ASCII: usize = 0x7f - 0x20;
    for mode in [OverlayMode::Sprite, OverlayMode::Draw] {
        let mut o = Overlay::new(mode, OverlayStyle::default()).unwrap();
        let s = o.cache_stats();
        assert_eq!(
            (s.glyph_hits, s.glyph_misses, s.glyph_entries),
            (0, 0, ASCII)
        );
        let mut f = background(PixelFormat::I420, 320, 40);
        let ascii: String = (0x20u8..0x7f).map(char::from).collect();
        let hud = Hud {
            fps: 30.0,
            frame_index: 1,
            state: &ascii,
        };
        let mut wide = background(PixelFormat::Bgr24, 4000, 24);
        o.draw_hud(&mut wide, &hud).unwrap();
        let first = o.cache_stats();
        assert_eq!(first.glyph_misses, 0, "{mode:?}: ASCII is pre-warmed");
        assert!(first.glyph_hits > ASCII as u64);
        assert_eq!(first.glyph_entries, ASCII);
        // many distinct non-ASCII characters: cached lazily, bounded, ASCII never evicted
        let many: String = ('À'..='ÿ').chain(ascii.chars()).collect();
        let hud = Hud {
            fps: 1.0,
            frame_index: 2,
            state: &many,
        };
        o.draw_hud(&mut wide, &hud).unwrap();
        let s = o.cache_stats();
        assert_eq!(s.glyph_misses, ('À'..='ÿ').count() as u64, "{mode:?}");
        assert_eq!(s.glyph_entries, GLYPH_CACHE_CAP);
        let hud = Hud {
            fps: 30.0,
            frame_index: 1234,
            state: "streaming (repeat)",
        };
        o.draw_hud(&mut f, &hud).unwrap();
        assert_eq!(o.cache_stats().glyph_misses, s.glyph_misses, "{mode:?}");
        // a new font size starts over, pre-warmed again
        o.set_style(OverlayStyle {
            hud_px: 12.0,
            ..OverlayStyle::default()
        })
        .unwrap();
        assert_eq!(o.cache_stats().glyph_entries, ASCII);
    }
}

#[test]
fn draw_equals_sprite_for_all_ascii_and_other_sizes() {
    let ascii: String = (0x20u8..0x7f).map(char::from).collect();
    for hud_px in [7.5, 16.0, 23.0] {
        let style = OverlayStyle {
            hud_px,
            ..OverlayStyle::default()
        };
        for state in [ascii.as_str(), "ÀÉîøü €"] {
            let one = |o: &mut Overlay, f: &mut Frame| {
                let hud = Hud {
                    fps: 12.3,
                    frame_index: 98_765,
                    state,
                };
                o.draw_hud(f, &hud).unwrap();
            };
            let size = (2400, 40);
            let a = render(OverlayMode::Draw, &style, PixelFormat::Bgr24, size, one);
            let b = render(OverlayMode::Sprite, &style, PixelFormat::Bgr24, size, one);
            assert_eq!(a.data(), b.data(), "{hud_px} {state}");
        }
    }
}

#[test]
fn gray_needs_colour() {
    for mode in [OverlayMode::Draw, OverlayMode::Sprite] {
        let mut o = Overlay::new(mode, OverlayStyle::default()).unwrap();
        let mut f = Frame::new(PixelFormat::Gray8, 32, 32);
        let e = o.draw_gaze(&mut f, 10.0, 10.0, true).unwrap_err();
        assert!(matches!(e, OverlayError::NeedsColour(PixelFormat::Gray8)));
        let hud = Hud {
            fps: 1.0,
            frame_index: 0,
            state: "x",
        };
        let e = o.draw_hud(&mut f, &hud).unwrap_err();
        assert!(matches!(e, OverlayError::NeedsColour(PixelFormat::Gray8)));
    }
}

#[test]
fn invalid_style_is_an_error() {
    for style in [
        OverlayStyle {
            radius: MAX_RADIUS + 1,
            ..OverlayStyle::default()
        },
        OverlayStyle {
            thickness: u32::MAX,
            ..OverlayStyle::default()
        },
        OverlayStyle {
            hud_px: f32::NAN,
            ..OverlayStyle::default()
        },
    ] {
        assert!(matches!(
            Overlay::new(OverlayMode::Sprite, style),
            Err(OverlayError::InvalidStyle(_))
        ));
    }
}

#[test]
fn wild_coordinates_do_not_panic() {
    let wild = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::MAX,
        f32::MIN,
        1e30,
        -1e30,
        9.2e18,
        -9.2e18,
        2_147_483_648.0,
        -0.49,
        0.0,
    ];
    for mode in [OverlayMode::Draw, OverlayMode::Sprite] {
        let mut o = Overlay::new(mode, OverlayStyle::default()).unwrap();
        for format in FORMATS {
            for (w, h) in [(0usize, 0usize), (1, 1), (3, 2), (40, 30)] {
                let mut f = background(format, w, h);
                for x in wild {
                    for y in wild {
                        o.draw_gaze(&mut f, x, y, true).unwrap();
                    }
                }
                let hud = Hud {
                    fps: f32::NAN,
                    frame_index: u64::MAX,
                    state: "",
                };
                o.draw_hud(&mut f, &hud).unwrap();
            }
        }
    }
}

#[test]
fn marker_colour_lands_on_the_centre() {
    let style = OverlayStyle::default();
    for mode in [OverlayMode::Draw, OverlayMode::Sprite] {
        let mut o = Overlay::new(mode, style.clone()).unwrap();
        for (worn, c) in [(true, style.worn), (false, style.not_worn)] {
            let mut f = background(PixelFormat::Bgr24, 80, 60);
            o.draw_gaze(&mut f, 40.2, 29.6, worn).unwrap();
            let i = (30 * 80 + 40) * 3;
            assert_eq!(&f.data()[i..i + 3], &[c.b, c.g, c.r], "{mode:?} bgr");

            let mut f = background(PixelFormat::Rgba, 80, 60);
            let i = (30 * 80 + 40) * 4;
            let alpha_before = f.data()[i + 3];
            o.draw_gaze(&mut f, 40.0, 30.0, worn).unwrap();
            assert_eq!(&f.data()[i..i + 4], &[c.r, c.g, c.b, alpha_before]);

            let mut f = background(PixelFormat::Bgra, 80, 60);
            o.draw_gaze(&mut f, 40.0, 30.0, worn).unwrap();
            assert_eq!(&f.data()[i..i + 3], &[c.b, c.g, c.r], "{mode:?} bgra");

            let mut f = background(PixelFormat::I420, 80, 60);
            o.draw_gaze(&mut f, 40.0, 30.0, worn).unwrap();
            let (y, u, v) = blend::rgb_to_yuv601(c);
            assert_eq!(f.plane(0).row(30)[40], y);
            assert_eq!(f.plane(1).row(15)[20], u);
            assert_eq!(f.plane(2).row(15)[20], v);
        }
    }
    // yellow in BT.601 limited range
    assert_eq!(blend::rgb_to_yuv601(style.worn), (210, 16, 146));
}

#[test]
fn ring_is_where_the_radius_says() {
    let mut o = Overlay::new(OverlayMode::Sprite, OverlayStyle::default()).unwrap();
    let mut f = Frame::new(PixelFormat::Bgr24, 60, 60);
    o.draw_gaze(&mut f, 30.0, 30.0, true).unwrap();
    let px = |x: usize, y: usize| f.data()[(y * 60 + x) * 3 + 2];
    assert_eq!(px(40, 30), 255, "ring at radius 10");
    assert_eq!(px(30, 20), 255);
    assert_eq!(px(35, 30), 0, "inside the ring");
    assert_eq!(px(43, 30), 0, "outside the ring");
}

/// Per-frame cost of marker + HUD on a 480x360 preview (I420 and Bgr24). Run with
/// `cargo test -p pipeline --release --lib overlay::tests::timing -- --ignored --nocapture`.
#[test]
#[ignore]
fn timing_draw_vs_sprite() {
    let hud = Hud {
        fps: 30.0,
        frame_index: 123_456,
        state: "streaming",
    };
    let iters = 3000;
    for format in [PixelFormat::I420, PixelFormat::Bgr24] {
        for (mode, boxed) in [
            (OverlayMode::Draw, true),
            (OverlayMode::Sprite, true),
            (OverlayMode::Sprite, false),
        ] {
            let mut o = Overlay::new(mode, OverlayStyle::default()).unwrap();
            o.set_hud_background(boxed);
            let mut f = background(format, 480, 360);
            let mut gaze = std::time::Duration::ZERO;
            let mut text = std::time::Duration::ZERO;
            for i in 0..iters + 100 {
                let x = 40.0 + (i % 400) as f32 + 0.37;
                let y = 40.0 + (i % 280) as f32 + 0.61;
                let t0 = std::time::Instant::now();
                o.draw_gaze(&mut f, x, y, i % 2 == 0).unwrap();
                let t1 = std::time::Instant::now();
                o.draw_hud(&mut f, &hud).unwrap();
                let t2 = std::time::Instant::now();
                if i >= 100 {
                    gaze += t1 - t0;
                    text += t2 - t1;
                }
            }
            let us = |d: std::time::Duration| d.as_secs_f64() * 1e6 / iters as f64;
            println!(
                "{format:?} 480x360 {mode:?} (hud box {boxed}): marker {:.1} us, hud {:.1} us, total {:.1} us/frame",
                us(gaze),
                us(text),
                us(gaze + text)
            );
        }
    }
}

fn style_variants() -> Vec<OverlayStyle> {
    let mut out = Vec::new();
    for shape in [MarkerShape::Circle, MarkerShape::Cross] {
        for (radius, thickness, dot_radius) in [
            (0, 1, 0),
            (1, 1, 1),
            (3, 3, 0),
            (10, 0, 4),
            (7, 5, 2),
            (25, 4, 6),
        ] {
            out.push(OverlayStyle {
                shape,
                radius,
                thickness,
                dot_radius,
                ..OverlayStyle::default()
            });
        }
    }
    out
}

#[test]
fn marker_box_holds_all_coverage() {
    for s in style_variants() {
        let key = marker::MarkerKey {
            shape: s.shape,
            radius: s.radius,
            thickness: s.thickness,
            dot_radius: s.dot_radius,
            colour: s.worn,
        };
        let half = key.half();
        for i in -half..=half {
            for (dx, dy) in [(i, -half), (i, half), (-half, i), (half, i)] {
                assert_eq!(key.alpha_at(dx, dy), 0, "{s:?} border ({dx},{dy})");
            }
        }
    }
}

#[test]
fn golden_draw_equals_sprite_for_style_variants() {
    for style in style_variants() {
        for format in [PixelFormat::I420, PixelFormat::Bgra] {
            for (x, y) in [(20.4, 17.5), (-1.6, 3.0), (39.5, 29.5)] {
                let one = |o: &mut Overlay, f: &mut Frame| o.draw_gaze(f, x, y, false).unwrap();
                let a = render(OverlayMode::Draw, &style, format, (40, 30), one);
                let b = render(OverlayMode::Sprite, &style, format, (40, 30), one);
                assert!(max_diff(&a, &b) <= 1, "{style:?} {format:?} ({x},{y})");
            }
        }
    }
}
