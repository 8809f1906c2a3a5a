//! The passthrough remuxer (`--encoder passthrough`) on real streams: the committed H.264 clips
//! and the world video of the committed Neon fixture (depacketized from its RTP, stamped by its
//! RTCP sender reports) go through [`Remuxer`] into Matroska; ffprobe decodes every access unit
//! from the first IDR at the right size and duration, libavformat's demuxer gives back the input's
//! NAL units byte for byte, and a writer killed with SIGKILL leaves a file that still decodes
//! every access unit up to its last sync.
//!
//! `measure_cpu_remux_vs_reencode` (ignored) prints the CPU cost per stream-second of remuxing
//! against decoding and re-encoding the same fixture with the libav backend.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use ffmpeg_next as ff;
use pipeline::coordinator::{Control, PipelineConfig, RunningPipeline, PASSTHROUGH_NEEDS_H264};
use pipeline::decode::annexb::{contains_idr, nal_units, split_access_units};
use pipeline::fixture::{FixtureReader, PacketKind};
use pipeline::neon::clock::{ClockRate, SrClock};
use pipeline::neon::rtp::RtpPacket;
use pipeline::neon::{rtcp, Depacketizer};
use pipeline::profile::StageProfile;
use pipeline::record::encoder::passthrough::{segment_path, Dropped, OpenReason, Pushed, Remuxer};
use pipeline::record::encoder::EncoderKind;
use pipeline::record::RecordConfig;
use pipeline::source::synthetic::{SyntheticConfig, SyntheticSource};
use pipeline::source::{AccessUnitSink, Source, SourceError, SourceInfo, SourceItem};
use pipeline::time::{MonoNanos, UnixNanos};

use common::tmp;

const NEON_FIXTURE: &str = "../fixtures/neon/synthetic-12s.etfx";
const T0: i64 = 1_767_225_600_000_000_000;

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// One access unit with its device time and IDR flag.
#[derive(Clone)]
struct Au {
    data: Vec<u8>,
    time: UnixNanos,
    idr: bool,
}

/// The access units of a raw Annex B clip, stamped at 30 fps.
fn clip_aus(name: &str) -> Vec<Au> {
    let bytes = std::fs::read(repo("../fixtures/h264").join(name)).unwrap();
    split_access_units(&bytes)
        .enumerate()
        .map(|(i, au)| Au {
            data: au.to_vec(),
            time: UnixNanos(T0 + i as i64 * 1_000_000_000 / 30),
            idr: contains_idr(au),
        })
        .collect()
}

/// The world stream of an `.etfx` fixture as the live client sees it: RTP depacketized,
/// timestamps mapped to device time by the world stream's sender reports.
fn neon_aus(path: &Path) -> Vec<Au> {
    let mut r = FixtureReader::open(path).unwrap();
    let world = r.header().stream_index("world").unwrap();
    let mut d = Depacketizer::new();
    let mut clock = SrClock::new(ClockRate::VIDEO);
    let mut out = Vec::new();
    let mut last: Option<(u32, UnixNanos)> = None;
    let pull = |d: &mut Depacketizer, last: Option<(u32, UnixNanos)>, out: &mut Vec<Au>| {
        while let Some(au) = d.pull() {
            let (ts, t) = last.expect("a packet came first");
            let dt = i64::from(au.rtp_timestamp.wrapping_sub(ts) as i32);
            out.push(Au {
                data: au.data.to_vec(),
                time: t.add_ns(ClockRate::VIDEO.ticks_to_ns(dt)),
                idr: au.is_idr,
            });
        }
    };
    while let Some(p) = r.next_packet().unwrap() {
        if p.stream != world {
            continue;
        }
        match p.kind {
            PacketKind::Rtcp => {
                if let Some(sr) = rtcp::summarize(p.data).unwrap().sender_report {
                    clock.on_sender_report(&sr);
                }
            }
            PacketKind::Rtp => {
                let pkt = RtpPacket::parse(p.data).unwrap();
                let stamp = clock.on_packet(pkt.ssrc, pkt.timestamp);
                d.push(&pkt).unwrap();
                last = Some((pkt.timestamp, stamp.time.expect("SR before RTP")));
                pull(&mut d, last, &mut out);
            }
        }
    }
    d.flush();
    pull(&mut d, last, &mut out);
    out
}

struct Probe {
    frames: u64,
    width: u32,
    height: u32,
    duration_s: f64,
}

/// ffprobe decodes every frame (`-count_frames`).
fn ffprobe(path: &Path) -> Probe {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=nb_read_frames,width,height:format=duration",
        ])
        .args(["-of", "default=noprint_wrappers=1"])
        .arg(path)
        .output()
        .expect("ffprobe runs (ci/setup installs ffmpeg)");
    let text = String::from_utf8_lossy(&out.stdout);
    let get = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or("0")
            .trim()
            .to_owned()
    };
    Probe {
        frames: get("nb_read_frames").parse().unwrap_or(0),
        width: get("width").parse().unwrap_or(0),
        height: get("height").parse().unwrap_or(0),
        duration_s: get("duration").parse().unwrap_or(0.0),
    }
}

/// The packets libavformat's Matroska demuxer reads back, each as its list of NAL units
/// (length prefixes resolved with the size the file's `avcC` declares).
fn demux_nals(path: &Path) -> Vec<Vec<Vec<u8>>> {
    ff::init().unwrap();
    let mut ictx = ff::format::input(path).unwrap();
    let extradata = {
        let s = ictx.stream(0).unwrap();
        let par = s.parameters();
        // SAFETY: reading two fields of the stream's parameters.
        unsafe {
            let p = par.as_ptr();
            std::slice::from_raw_parts((*p).extradata, (*p).extradata_size as usize).to_vec()
        }
    };
    assert_eq!(extradata[0], 1, "avcC version 1");
    let len_size = usize::from(extradata[4] & 3) + 1;
    let mut out = Vec::new();
    for (_, pkt) in ictx.packets() {
        let mut data = pkt.data().unwrap_or_default();
        let mut nals = Vec::new();
        while !data.is_empty() {
            let n = data[..len_size]
                .iter()
                .fold(0usize, |a, &b| (a << 8) | usize::from(b));
            nals.push(data[len_size..len_size + n].to_vec());
            data = &data[len_size + n..];
        }
        out.push(nals);
    }
    out
}

fn input_nals(au: &[u8]) -> Vec<Vec<u8>> {
    nal_units(au).map(|n| n.data.to_vec()).collect()
}

/// Feeds every AU; returns how many were written.
fn remux_all(dir: &Path, aus: &[Au]) -> (u64, Vec<Pushed>) {
    let mut m = Remuxer::new(dir);
    let pushed: Vec<Pushed> = aus
        .iter()
        .map(|a| m.push(&a.data, a.time, a.idr).unwrap())
        .collect();
    let written = m.stats().written;
    let segs = m.finish();
    assert!(segs.iter().all(|s| s.end == "finished"), "{segs:?}");
    (written, pushed)
}

fn check_file(path: &Path, aus: &[Au], size: (u32, u32)) {
    let first = aus.iter().position(|a| a.idr).unwrap();
    let kept = &aus[first..];
    let p = ffprobe(path);
    assert_eq!(p.frames, kept.len() as u64, "ffprobe decodes every AU");
    assert_eq!((p.width, p.height), size);
    let span = kept.last().unwrap().time.delta_ns(kept[0].time) as f64 / 1e9;
    let interval = span / (kept.len() - 1) as f64;
    assert!(
        (p.duration_s - (span + interval)).abs() < 0.01,
        "duration {} vs {} s of AUs",
        p.duration_s,
        span + interval
    );
    let back = demux_nals(path);
    assert_eq!(back.len(), kept.len());
    for (i, (got, au)) in back.iter().zip(kept).enumerate() {
        assert_eq!(
            got,
            &input_nals(&au.data),
            "access unit {i}: NAL units differ"
        );
    }
}

#[test]
fn clips_are_copied_byte_for_byte_from_the_first_idr() {
    for (name, size) in [
        ("testsrc2-320x180-main.h264", (320, 180)),
        ("testsrc2-320x180-bframes.h264", (320, 180)),
    ] {
        let dir = tmp(&format!("passthrough-clip-{name}"));
        let mut aus = clip_aus(name);
        assert!(aus[0].idr);
        // start mid-GOP, as a recording started between keyframes does
        let second_idr = aus.iter().skip(1).position(|a| a.idr).unwrap() + 1;
        aus.drain(..second_idr - 3);
        let (written, pushed) = remux_all(&dir, &aus);
        assert_eq!(pushed[..3], [Pushed::Dropped(Dropped::BeforeIdr); 3]);
        assert_eq!(written, aus.len() as u64 - 3);
        check_file(&segment_path(&dir, 0), &aus, size);
        assert!(!segment_path(&dir, 1).exists());
    }
}

#[test]
fn neon_fixture_world_stream_is_copied_at_full_rate() {
    let aus = neon_aus(&repo(NEON_FIXTURE));
    assert!(aus.len() >= 300, "{} AUs", aus.len());
    let dir = tmp("passthrough-neon");
    let (written, pushed) = remux_all(&dir, &aus);
    assert_eq!(
        written,
        aus.len() as u64,
        "the depacketizer starts at an IDR"
    );
    match pushed[0] {
        Pushed::Written(w) => {
            let o = w.opened.unwrap();
            assert_eq!((o.index, o.reason), (0, OpenReason::First));
            assert_eq!((o.width, o.height), (1600, 1200));
        }
        p => panic!("{p:?}"),
    }
    check_file(&segment_path(&dir, 0), &aus, (1600, 1200));
}

#[test]
fn new_parameter_sets_open_a_new_segment_and_gaps_keep_time() {
    // The Neon stream, then after a 3 s reconnect gap the 320x180 clip; then its clock
    // restarting 1 s earlier.
    let neon = neon_aus(&repo(NEON_FIXTURE));
    let neon = &neon[..60];
    let end = neon.last().unwrap().time;
    let mut clip = clip_aus("testsrc2-320x180-main.h264");
    for (i, a) in clip.iter_mut().enumerate() {
        a.time = end.add_ns(3_000_000_000 + i as i64 * 33_333_333);
        if i >= 30 {
            a.time = a.time.add_ns(-1_000_000_000);
        }
    }
    let dir = tmp("passthrough-segments");
    let mut m = Remuxer::new(&dir);
    for a in neon {
        m.push(&a.data, a.time, a.idr).unwrap();
    }
    let mut notes = Vec::new();
    for a in &clip {
        if let Pushed::Written(w) = m.push(&a.data, a.time, a.idr).unwrap() {
            notes.push(w);
        }
    }
    let opened = notes[0].opened.unwrap();
    assert_eq!(opened.reason, OpenReason::ParameterSetsChanged);
    assert_eq!((opened.index, opened.width, opened.height), (1, 320, 180));
    assert!((notes[0].gap_ns.unwrap() - 3_000_000_000).abs() < 1_000_000);
    assert_eq!(notes[0].pts_ms, 0, "a new segment starts its own time");
    // back in time at AU 30: pts keeps increasing by one interval
    assert!(notes[30].backwards_ns.unwrap() > 900_000_000);
    let step = |i: usize| notes[i].pts_ms - notes[i - 1].pts_ms;
    assert!((33..=34).contains(&step(30)), "{}", step(30));
    assert!((33..=34).contains(&step(31)), "{}", step(31));
    assert!(notes[30].gap_ns.is_none());
    let s = m.stats();
    assert_eq!((s.segments, s.parameter_set_changes, s.gaps), (2, 1, 1));
    let segs = m.finish();
    assert_eq!(segs.len(), 2);
    assert_eq!(segs[0].frames, 60);
    assert_eq!(segs[1].frames, clip.len() as u64);
    let p0 = ffprobe(&segment_path(&dir, 0));
    let p1 = ffprobe(&segment_path(&dir, 1));
    assert_eq!((p0.frames, p0.width, p0.height), (60, 1600, 1200));
    assert_eq!(
        (p1.frames, p1.width, p1.height),
        (clip.len() as u64, 320, 180)
    );
}

#[test]
fn a_discontinuity_waits_for_the_next_idr() {
    let aus = clip_aus("testsrc2-320x180-main.h264");
    let dir = tmp("passthrough-discontinuity");
    let mut m = Remuxer::new(&dir);
    let next_idr = aus.iter().skip(1).position(|a| a.idr).unwrap() + 1;
    for (i, a) in aus.iter().enumerate() {
        if i == 5 {
            m.discontinuity();
        }
        let r = m.push(&a.data, a.time, a.idr).unwrap();
        if (5..next_idr).contains(&i) {
            assert_eq!(r, Pushed::Dropped(Dropped::BeforeIdr), "AU {i}");
        } else {
            assert!(matches!(r, Pushed::Written(_)), "AU {i}");
        }
    }
    let segs = m.finish();
    let expect = aus.len() - (next_idr - 5);
    assert_eq!(segs[0].frames, expect as u64);
    assert_eq!(ffprobe(&segment_path(&dir, 0)).frames, expect as u64);
}

const CHILD_DIR: &str = "PASSTHROUGH_CHILD_DIR";
const SYNC_AT: usize = 200;

/// Runs only as the child of `sigkill_keeps_everything_before_the_last_sync`: remuxes the Neon
/// fixture, syncs after `SYNC_AT` AUs, says so, and goes on writing slowly until killed.
#[test]
#[ignore = "child process of sigkill_keeps_everything_before_the_last_sync"]
fn sigkill_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let aus = neon_aus(&repo(NEON_FIXTURE));
    let mut m = Remuxer::new(Path::new(&dir));
    for (i, a) in aus.iter().cycle().take(100_000).enumerate() {
        // a second lap of the fixture repeats device times: the clock keeps pts increasing
        m.push(&a.data, a.time, a.idr).unwrap();
        if i + 1 == SYNC_AT {
            assert_eq!(m.sync().unwrap(), SYNC_AT as u64);
            println!("synced {SYNC_AT}");
        }
        if i + 1 > SYNC_AT {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
}

#[test]
fn sigkill_keeps_everything_before_the_last_sync() {
    let dir = tmp("passthrough-sigkill");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigkill_child", "--ignored", "--nocapture"])
        .env(CHILD_DIR, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let synced = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains(&format!("synced {SYNC_AT}")));
    assert!(synced, "the child reached its sync point");
    // Let it write on past the sync (into an open cluster), then kill it mid-stream.
    std::thread::sleep(std::time::Duration::from_millis(300));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success());
    let path = segment_path(&dir, 0);
    let p = ffprobe(&path);
    assert!(
        p.frames >= SYNC_AT as u64,
        "{} AUs decode from the killed writer's file, {SYNC_AT} were synced",
        p.frames
    );
    assert_eq!((p.width, p.height), (1600, 1200));
    // The synced part is byte-identical to the input.
    let aus = neon_aus(&repo(NEON_FIXTURE));
    let back = demux_nals(&path);
    assert!(back.len() >= SYNC_AT);
    for (i, (got, au)) in back.iter().zip(&aus).take(SYNC_AT).enumerate() {
        assert_eq!(got, &input_nals(&au.data), "access unit {i}");
    }
}

/// A source for the recorder tests: frames (and gaze, IMU) from the synthetic scene, and with
/// each frame the next world access unit of the Neon fixture handed to the access-unit sink, as
/// a Neon source hands over each access unit it decodes.
struct SyntheticWithFixtureVideo {
    inner: SyntheticSource,
    aus: std::vec::IntoIter<Au>,
    sink: Option<Arc<dyn AccessUnitSink>>,
}

impl Source for SyntheticWithFixtureVideo {
    fn info(&self) -> SourceInfo {
        self.inner.info()
    }
    fn next_item(&mut self, profile: &mut StageProfile) -> Result<Option<SourceItem>, SourceError> {
        let item = self.inner.next_item(profile)?;
        if let (Some(SourceItem::Frame { .. }), Some(sink)) = (&item, &self.sink) {
            if let Some(au) = self.aus.next() {
                sink.access_unit(&au.data, au.time, MonoNanos::now(), au.idr);
            }
        }
        Ok(item)
    }
    fn reserve_in_flight(&mut self, frames: usize) {
        self.inner.reserve_in_flight(frames);
    }
    fn delivers_h264(&self) -> bool {
        true
    }
    fn set_access_unit_sink(&mut self, sink: Arc<dyn AccessUnitSink>) {
        self.sink = Some(sink);
    }
}

fn synthetic(seconds: u64) -> SyntheticSource {
    SyntheticSource::new(SyntheticConfig {
        width: 320,
        height: 240,
        fps: 30.0,
        duration: Some(std::time::Duration::from_secs(seconds)),
        paced: false,
        ..SyntheticConfig::default()
    })
    .unwrap()
}

/// Records the whole stream offline (every item through every stage); returns the folder.
fn record_offline(root: &Path, overlay_video: bool) -> (PathBuf, usize) {
    let aus = neon_aus(&repo(NEON_FIXTURE));
    let n = aus.len();
    let source = SyntheticWithFixtureVideo {
        inner: synthetic(12),
        aus: aus.into_iter(),
        sink: None,
    };
    let mut rc = RecordConfig::new(root.to_owned());
    rc.passthrough = true;
    rc.overlay_video = overlay_video;
    rc.encoder = EncoderKind::Libav;
    rc.fsync_every = 100;
    rc.prepare().unwrap();
    let cfg = PipelineConfig {
        live: false,
        record: Some(rc),
        record_at_start: true,
        ..PipelineConfig::default()
    };
    let running =
        RunningPipeline::start(Box::new(source), cfg, Arc::new(Control::default())).unwrap();
    let out = running.wait();
    assert!(out.error.is_none(), "{:?}", out.error);
    let rec = out.recording.expect("the recording closed at the end");
    assert_eq!(rec.end, "stopped");
    (rec.dir, n)
}

fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

#[test]
fn recorder_writes_passthrough_file_timing_csv_and_manifest() {
    let root = tmp("passthrough-recorder");
    let (dir, n) = record_offline(&root, false);
    let video = dir.join("scene_passthrough_000.mkv");
    let p = ffprobe(&video);
    assert_eq!(p.frames, n as u64, "every access unit, full rate");
    assert_eq!((p.width, p.height), (1600, 1200));
    assert!(!dir.join("scene_000.mkv").exists(), "no overlay video");
    assert!(!dir.join("frame_timing.csv").exists());
    let rows = csv_rows(&dir.join("passthrough_timing.csv"));
    assert_eq!(rows.len(), n);
    let aus = neon_aus(&repo(NEON_FIXTURE));
    for (i, (row, au)) in rows.iter().zip(&aus).enumerate() {
        assert_eq!(row[0], i.to_string());
        assert_eq!(row[1], "0");
        assert_eq!(row[3], au.time.0.to_string());
        assert_eq!(row[6], au.data.len().to_string());
        assert_eq!(row[7], if au.idr { "1" } else { "0" });
    }
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("session.json")).unwrap()).unwrap();
    assert_eq!(m["end"], "stopped");
    assert_eq!(m["config"]["passthrough"], true);
    assert_eq!(m["config"]["overlay_video"], false);
    assert_eq!(m["counts"]["passthrough_written"], n as u64);
    assert_eq!(m["counts"]["passthrough_received"], n as u64);
    assert_eq!(m["counts"]["passthrough_segments"], 1);
    assert_eq!(m["counts"]["frames"], 0);
    assert_eq!(m["csv"]["passthrough_rows"], n as u64);
    let segs = m["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 1);
    assert_eq!(segs[0]["file"], "scene_passthrough_000.mkv");
    assert_eq!(segs[0]["frames"], n as u64);
    assert_eq!(segs[0]["end"], "finished");
    let events = csv_rows(&dir.join("events.csv"));
    let kinds: Vec<&str> = events.iter().map(|e| e[3].as_str()).collect();
    assert!(kinds.contains(&"passthrough_start"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "fsync").count(), n / 100);
}

#[test]
fn passthrough_and_overlay_video_record_side_by_side() {
    let root = tmp("passthrough-and-overlay");
    let (dir, n) = record_offline(&root, true);
    assert_eq!(
        ffprobe(&dir.join("scene_passthrough_000.mkv")).frames,
        n as u64
    );
    let overlay = ffprobe(&dir.join("scene_000.mkv"));
    assert_eq!((overlay.width, overlay.height), (320, 240));
    // 12 s at the default 5 fps timer selection
    assert_eq!(overlay.frames, 60);
    assert_eq!(csv_rows(&dir.join("frame_timing.csv")).len(), 60);
    assert_eq!(csv_rows(&dir.join("passthrough_timing.csv")).len(), n);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("session.json")).unwrap()).unwrap();
    let files: Vec<&str> = m["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["scene_000.mkv", "scene_passthrough_000.mkv"]);
}

#[test]
fn passthrough_without_h264_is_refused_before_streaming() {
    let root = tmp("passthrough-refused");
    let mut rc = RecordConfig::new(root.clone());
    rc.passthrough = true;
    rc.overlay_video = false;
    let cfg = PipelineConfig {
        record: Some(rc),
        record_at_start: true,
        ..PipelineConfig::default()
    };
    let err = RunningPipeline::start(Box::new(synthetic(1)), cfg, Arc::new(Control::default()))
        .err()
        .expect("refused");
    assert_eq!(
        err.to_string(),
        format!("recording: {PASSTHROUGH_NEEDS_H264}")
    );
    // The CLI says it in one line and creates nothing.
    let out = common::eyetrack()
        .args([
            "run",
            "--duration",
            "1s",
            "-q",
            "--encoder",
            "passthrough",
            "--record",
        ])
        .arg(&root)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim(),
        format!("eyetrack: error: {PASSTHROUGH_NEEDS_H264}")
    );
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
}

/// CPU seconds (user + system) this process has used, threads included (x264 runs its own).
fn process_cpu_s() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    secs(u.user_time()) + secs(u.system_time())
}

/// Runs `f` `runs` times; the least CPU it took (other processes share this machine).
fn least_cpu(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let c0 = process_cpu_s();
            f();
            process_cpu_s() - c0
        })
        .fold(f64::INFINITY, f64::min)
}

/// Decodes the AUs with libavcodec (one thread, as the pipeline does) and hands every
/// `every`-th picture to `each`.
fn decode_all(aus: &[Au], every: usize, mut each: impl FnMut(&pipeline::frame::Frame)) {
    use pipeline::decode::{self, DecoderKind, DecoderOptions};
    let mut dec = decode::open::<u64>(DecoderKind::Libav, &DecoderOptions::default()).unwrap();
    let mut pool = pipeline::frame::FramePool::new(4);
    let mut out = Vec::new();
    let mut n = 0usize;
    for (i, au) in aus.iter().enumerate() {
        dec.decode(&au.data, i as u64, &mut pool, &mut out).unwrap();
        for d in out.drain(..) {
            if n.is_multiple_of(every) {
                each(&d.frame);
            }
            n += 1;
        }
    }
    dec.flush(&mut pool, &mut out).unwrap();
    for d in out.drain(..) {
        if n.is_multiple_of(every) {
            each(&d.frame);
        }
        n += 1;
    }
    assert_eq!(n, aus.len());
}

/// `cargo test --release -p pipeline --test passthrough -- --ignored --nocapture measure`
#[test]
#[ignore = "measurement: prints CPU per stream-second, asserts nothing about timing"]
fn measure_cpu_remux_vs_reencode() {
    use pipeline::frame::PixelFormat;
    use pipeline::record::encoder::{self, EncoderSpec};
    let aus = neon_aus(&repo(NEON_FIXTURE));
    let stream_s = aus.len() as f64 / 30.0;
    let dir = tmp("passthrough-measure");
    let remux = least_cpu(5, || {
        let mut m = Remuxer::new(&dir);
        for a in &aus {
            m.push(&a.data, a.time, a.idr).unwrap();
        }
        m.sync().unwrap();
        m.finish();
    });
    let decode = least_cpu(3, || decode_all(&aus, 1, |_| {}));
    let reencode = |fps: u32| {
        let every = (30 / fps) as usize;
        least_cpu(3, || {
            let spec = EncoderSpec {
                width: 1600,
                height: 1200,
                fps,
                input: PixelFormat::I420,
                crf: 23,
                threads: None,
            };
            let mut enc = encoder::open(EncoderKind::Libav, &spec, &dir.join("libav.mkv")).unwrap();
            decode_all(&aus, every, |f| enc.encode(&f.view()).unwrap());
            enc.finish().unwrap();
        })
    };
    let (enc30, enc5) = (reencode(30), reencode(5));
    let per = |cpu: f64| cpu / stream_s * 100.0;
    println!(
        "{} AUs, {stream_s:.1} s of 1600x1200 30 fps H.264 ({} bytes); CPU % of one core per \
         stream-second:",
        aus.len(),
        aus.iter().map(|a| a.data.len()).sum::<usize>()
    );
    println!(
        "  passthrough remux, all 30 fps:          {:7.3} %",
        per(remux)
    );
    println!(
        "  libav decode only (not needed by passthrough when the preview is off): {:7.3} %",
        per(decode)
    );
    println!(
        "  libav re-encode 30 fps (decode+encode - decode): {:7.3} %",
        per(enc30 - decode)
    );
    println!(
        "  libav re-encode 5 fps  (decode+encode - decode): {:7.3} %",
        per(enc5 - decode)
    );
    println!(
        "  ratio re-encode 30 fps / remux: {:.0}x",
        (enc30 - decode) / remux
    );
}
