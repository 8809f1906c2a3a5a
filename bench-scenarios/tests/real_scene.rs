//! Real device bytes: the Neon scene recording in `../shared/data/neon-scene-real` (phone H.264
//! Baseline 1600x1200, 144 pictures, MIT) imported as a fixture with its own times and gaze.
//!
//! Every other H.264 the tests decode was made by this project or by ffmpeg; this one was made
//! by the phone. The fixture is replayed and decoded by both decoders and compared with
//! ffmpeg's own decode of the mp4, then streamed by neon-sim to `eyetrack` over UDP and TCP.
//! Skipped (with the reason printed) where the shared data folder is absent.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use pipeline::coordinator::Control;
use pipeline::decode::DecoderKind;
use pipeline::fixture::import::{import, ImportConfig};
use pipeline::profile::{Counters, StageProfile};
use pipeline::source::neon::{DecodePolicy, FixtureConfig, FixtureSource, LossPolicy};
use pipeline::source::{Source, SourceItem};
use pipeline::streams::StreamSet;

#[path = "common/bins.rs"]
mod bins;

const PICTURES: usize = 144;
const WIDTH: usize = 1600;
const HEIGHT: usize = 1200;
const VIDEO: &str = "Neon Scene Camera v1 ps1.mp4";

/// Each case decodes 1600x1200 video; one at a time on a 2-core machine.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The recording, or `None` (and a printed reason) when this checkout has no shared data.
fn data_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/neon-scene-real");
    if dir.join(VIDEO).is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: no real Neon recording at {} (the shared data folder is not there)",
            dir.display()
        );
        None
    }
}

/// Little-endian int64 Unix ns, one per record (protocol doc 9.1).
fn read_times(path: &Path) -> Vec<i64> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The fixture, built once per test process: the recording's `.time` and raw gaze written as
/// the Pupil Cloud CSVs `fixture import` reads (its video is H.264 without B-frames, so import
/// copies the phone's bytes rather than re-encoding).
fn fixture(data: &Path) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("eyetrack-real-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let frames = read_times(&data.join("Neon Scene Camera v1 ps1.time"));
            assert_eq!(frames.len(), PICTURES);
            let mut world = String::from("timestamp [ns]\n");
            frames.iter().for_each(|t| world += &format!("{t}\n"));
            std::fs::write(dir.join("world_timestamps.csv"), world).unwrap();
            let gaze_t = read_times(&data.join("gaze ps1.time"));
            let raw = std::fs::read(data.join("gaze ps1.raw")).unwrap();
            let xy: Vec<(f32, f32)> = raw
                .chunks_exact(8)
                .map(|c| {
                    let f = |i: usize| f32::from_le_bytes(c[i..i + 4].try_into().unwrap());
                    (f(0), f(4))
                })
                .collect();
            assert_eq!(xy.len(), gaze_t.len(), "gaze records and times");
            let mut gaze = String::from("timestamp [ns],gaze x [px],gaze y [px],worn\n");
            for (t, (x, y)) in gaze_t.iter().zip(&xy) {
                gaze += &format!("{t},{x},{y},1\n");
            }
            std::fs::write(dir.join("gaze.csv"), gaze).unwrap();
            let out = dir.join("real.etfx");
            import(&ImportConfig {
                video: data.join(VIDEO),
                gaze: dir.join("gaze.csv"),
                world_timestamps: Some(dir.join("world_timestamps.csv")),
                imu: None,
                output: out.clone(),
                bitrate_kbps: 8000,
                made_by: "bench-scenarios/tests/real_scene.rs".into(),
            })
            .unwrap();
            out
        })
        .clone()
}

/// ffmpeg's own decode of the phone's mp4, one I420 picture per call.
struct Reference {
    child: std::process::Child,
    out: std::process::ChildStdout,
}

impl Reference {
    fn open(mp4: &Path) -> Reference {
        let mut child = Command::new("ffmpeg")
            .args(["-v", "error", "-nostdin", "-i"])
            .arg(mp4)
            .args(["-an", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("ffmpeg runs");
        let out = child.stdout.take().unwrap();
        Reference { child, out }
    }

    fn next(&mut self, buf: &mut [u8]) -> bool {
        self.out.read_exact(buf).is_ok()
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Replays the fixture with `decoder` and compares each picture with ffmpeg's: (pictures,
/// lowest per-picture PSNR, PSNR of all pictures together).
fn compare(fixture: &Path, mp4: &Path, decoder: DecoderKind) -> (usize, f64, f64) {
    let mut src = FixtureSource::open(FixtureConfig {
        path: fixture.to_path_buf(),
        paced: false,
        duration: None,
        decoder,
        loss: LossPolicy::default_for(decoder),
        decode: DecodePolicy::default(),
        streams: StreamSet::default(),
    })
    .unwrap();
    let control = Arc::new(Control::default());
    control.preview_visible.store(true, Ordering::Relaxed);
    src.bind(&Arc::new(Counters::default()), &control);
    let mut reference = Reference::open(mp4);
    let (cw, ch) = (WIDTH / 2, HEIGHT / 2);
    let mut want = vec![0u8; WIDTH * HEIGHT + 2 * cw * ch];
    let mut profile = StageProfile::new(false);
    let (mut n, mut min_db, mut sse_all, mut count_all) = (0usize, 99.0f64, 0u64, 0u64);
    while let Some(item) = src.next_item(&mut profile).unwrap() {
        let SourceItem::Frame { frame, .. } = item else {
            continue;
        };
        assert_eq!((frame.width(), frame.height()), (WIDTH, HEIGHT));
        assert!(
            reference.next(&mut want),
            "{decoder:?}: ffmpeg has fewer pictures than the {} decoded",
            n + 1
        );
        let view = frame.view();
        let planes = [
            (&want[..WIDTH * HEIGHT], WIDTH),
            (&want[WIDTH * HEIGHT..WIDTH * HEIGHT + cw * ch], cw),
            (&want[WIDTH * HEIGHT + cw * ch..], cw),
        ];
        let (mut sse, mut count) = (0u64, 0u64);
        for (i, (plane, w)) in planes.into_iter().enumerate() {
            let got = view.plane(i);
            for (y, row) in plane.chunks_exact(w).enumerate() {
                for (a, b) in got.row(y).iter().zip(row) {
                    let d = i64::from(*a) - i64::from(*b);
                    sse += (d * d) as u64;
                }
                count += w as u64;
            }
        }
        min_db = min_db.min(pipeline::fixture::quality::psnr_db(
            sse as f64 / count as f64,
        ));
        sse_all += sse;
        count_all += count;
        n += 1;
    }
    assert!(
        !reference.next(&mut want),
        "{decoder:?}: ffmpeg has more pictures than the {n} decoded"
    );
    let all_db = pipeline::fixture::quality::psnr_db(sse_all as f64 / count_all.max(1) as f64);
    (n, min_db, all_db)
}

#[test]
fn both_decoders_match_ffmpeg_on_the_phones_h264() {
    let Some(data) = data_dir() else {
        return;
    };
    let _one = serial();
    let fixture = fixture(&data);
    let mp4 = data.join(VIDEO);
    for decoder in [DecoderKind::Libav, DecoderKind::Openh264] {
        let (n, min_db, all_db) = compare(&fixture, &mp4, decoder);
        println!(
            "real scene, {decoder:?}: {n} pictures, PSNR against ffmpeg {all_db:.2} dB overall, \
             {min_db:.2} dB at worst (99 = identical)"
        );
        assert_eq!(n, PICTURES, "{decoder:?}");
        assert!(min_db > 40.0, "{decoder:?}: a picture at {min_db:.2} dB");
        if decoder == DecoderKind::Libav {
            // The same decoder as ffmpeg's: bit-exact or as near as makes no difference.
            assert!(all_db > 60.0, "libav: {all_db:.2} dB");
        }
    }
}

/// The phone's bytes through the simulator and the live client, both transports at once.
#[test]
fn streams_through_neon_sim_over_udp_and_tcp() {
    let Some(data) = data_dir() else {
        return;
    };
    let _one = serial();
    let fixture = fixture(&data);
    let sim = neon_sim::LoopbackSim::start(&fixture, &[]).expect("neon-sim starts");
    let dir = fixture.with_file_name("runs");
    std::fs::create_dir_all(&dir).unwrap();
    let runs: Vec<_> = ["udp", "tcp"]
        .into_iter()
        .map(|t| {
            let report = dir.join(format!("{t}.json"));
            let child = Command::new(bins::eyetrack())
                .arg("run")
                .args(["--source", &format!("neon://{}", sim.http)])
                .args(["--rtsp-transport", t, "--duration", "3s", "--quiet"])
                .arg("--report")
                .arg(&report)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (t, child, report)
        })
        .collect();
    for (t, child, report) in runs {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{t}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        let frames = r["frames"]["frames_acquired"].as_u64().unwrap_or(0);
        let gaze = r["frames"]["gaze_samples"].as_u64().unwrap_or(0);
        println!("real scene over {t}: {frames} frames, {gaze} gaze samples");
        assert!(frames > 0, "{t}: no frames");
        assert!(gaze > 0, "{t}: no gaze");
        assert_eq!(r["source"]["width"], WIDTH as u64, "{t}");
    }
}
