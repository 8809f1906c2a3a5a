//! The fixture tools end to end with the real ffmpeg CLI: `synth` from the synthetic source and
//! `import` from an MP4 made by ffmpeg plus CSVs in the Pupil Cloud layout (gaze timestamps from
//! the real demo recording when it is there), checked by depacketizing what was written.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pipeline::fixture::import::{import, ImportConfig};
use pipeline::fixture::inspect::inspect;
use pipeline::fixture::synth::{synth, SynthConfig};
use pipeline::fixture::{FixtureReader, PacketKind};
use pipeline::neon::gaze::NeonGaze;
use pipeline::neon::rtp::RtpPacket;
use pipeline::neon::{rtcp, Depacketizer};

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fixture-tools-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// (access units, IDR flags) of the world stream, and gaze (x, y, Unix ns via the SR mapping).
fn decode(path: &Path) -> (usize, Vec<bool>, Vec<(f32, f32, i64)>) {
    let mut r = FixtureReader::open(path).unwrap();
    let (world, gaze) = (
        r.header().stream_index("world").unwrap(),
        r.header().stream_index("gaze").unwrap(),
    );
    let mut d = Depacketizer::new();
    let mut idr = Vec::new();
    let mut g = Vec::new();
    let mut sr = None;
    while let Some(p) = r.next_packet().unwrap() {
        match (p.stream, p.kind) {
            (s, PacketKind::Rtp) if s == world => {
                d.push(&RtpPacket::parse(p.data).unwrap()).unwrap();
                while let Some(au) = d.pull() {
                    idr.push(au.is_idr);
                }
            }
            (s, PacketKind::Rtcp) if s == gaze => {
                let i = rtcp::summarize(p.data).unwrap().sender_report.unwrap();
                sr = Some((i.ntp.to_unix_nanos().0, i.rtp_timestamp));
            }
            (s, PacketKind::Rtp) if s == gaze => {
                let (ns, ts) = sr.expect("SR before gaze RTP");
                let pkt = RtpPacket::parse(p.data).unwrap();
                let v = NeonGaze::decode(pkt.payload).unwrap().binocular.unwrap();
                let dt = pkt.timestamp.wrapping_sub(ts) as i32 as i64;
                g.push((v.x, v.y, ns + dt * 1_000_000_000 / 90_000));
            }
            _ => {}
        }
    }
    assert!(r.is_complete());
    d.flush();
    while let Some(au) = d.pull() {
        idr.push(au.is_idr);
    }
    (idr.len(), idr, g)
}

#[test]
fn synth_writes_a_neon_like_fixture() {
    let out = tmp("synth").join("s.etfx");
    let sum = synth(&SynthConfig {
        output: out.clone(),
        duration: Duration::from_secs(2),
        width: 320,
        height: 240,
        fps: 30.0,
        seed: 3,
        bitrate_kbps: 800,
        keyframe_every: Some(20),
        start_unix_ns: Some(1_767_225_600_000_000_000),
        made_by: "test".into(),
        eyes: false,
        audio: false,
    })
    .unwrap();
    assert_eq!(sum.access_units, 60);
    let (aus, idr, gaze) = decode(&out);
    assert_eq!(aus, 60);
    // an IDR every 20 frames (--keyframe-every) and only there
    let idr_at: Vec<usize> = idr
        .iter()
        .enumerate()
        .filter(|(_, b)| **b)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(idr_at, vec![0, 20, 40]);
    assert_eq!(gaze.len(), 400);
    for w in gaze.windows(2) {
        assert!((w[1].2 - w[0].2 - 5_000_000).abs() < 20_000, "200 Hz");
    }
    let stats = inspect(&out).unwrap();
    assert!(stats.complete);
    let names: Vec<&str> = stats.streams.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["world", "gaze", "imu", "eye_events"]);
    for s in &stats.streams {
        assert_eq!(s.rtp_before_first_sr, 0, "{}: SR first", s.name);
        assert!(s.sender_reports >= 2, "{}", s.name);
        assert_eq!(s.seq_gaps, 0, "{}", s.name);
        assert_eq!(s.malformed, 0, "{}", s.name);
    }
    let imu = &stats.streams[2];
    assert!(
        (215..=225).contains(&imu.rtp_packets),
        "{}",
        imu.rtp_packets
    );
    // keepalives at least, and the world payloads stay under ~1200 bytes
    assert!(stats.streams[3].rtp_packets >= 2);
    assert!(stats.streams[0].bytes / stats.streams[0].rtp_packets <= 1212 + 16);

    // a fixture cut mid-record still yields its complete records and says where it broke
    let bytes = std::fs::read(&out).unwrap();
    let cut = tmp("synth").join("cut.etfx");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let partial = inspect(&cut).unwrap();
    assert!(!partial.complete);
    assert!(partial
        .error
        .as_deref()
        .unwrap()
        .contains("cut short at byte"));
    assert!(partial.packets > stats.packets / 2 && partial.packets < stats.packets);
}

/// The first `n` gaze timestamps of the real demo recording, if present (protocol doc 9.1).
fn real_gaze_times(n: usize) -> Option<Vec<i64>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/neon-demo-recording")
        .canonicalize()
        .ok()
        .or_else(|| {
            Path::new("/work/shared/data/neon-demo-recording")
                .canonicalize()
                .ok()
        })?;
    let raw = std::fs::read(dir.join("gaze_200hz.time")).ok()?;
    let t: Vec<i64> = raw
        .chunks_exact(8)
        .take(n)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (t.len() == n).then_some(t)
}

#[test]
fn import_takes_a_cloud_export_layout() {
    let dir = tmp("import");
    let n_gaze = 400;
    let times = real_gaze_times(n_gaze).unwrap_or_else(|| {
        (0..n_gaze as i64)
            .map(|i| 1_700_000_000_000_000_000 + i * 5_000_000)
            .collect()
    });
    let mut gaze_csv = String::from(
        "section id,recording id,timestamp [ns],gaze x [px],gaze y [px],worn,fixation id,blink id,azimuth [deg],elevation [deg]\n",
    );
    for (i, t) in times.iter().enumerate() {
        gaze_csv += &format!(
            "s1,r1,{t},{:.3},{:.3},{},,,0.0,0.0\n",
            100.0 + i as f64 * 0.5,
            50.0 + (i % 7) as f64,
            if i % 50 == 0 { "0.0" } else { "1.0" }
        );
    }
    std::fs::write(dir.join("gaze.csv"), gaze_csv).unwrap();
    let mut world = String::from("section id,recording id,timestamp [ns]\n");
    for i in 0..60i64 {
        world += &format!("s1,r1,{}\n", times[0] + 2_000_000 + i * 33_333_333);
    }
    std::fs::write(dir.join("world_timestamps.csv"), world).unwrap();

    for (name, extra) in [("bframes.mp4", &[][..]), ("nob.mp4", &["-bf", "0"][..])] {
        let mp4 = dir.join(name);
        let st = Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"])
            .args(["-i", "testsrc2=size=320x240:rate=30", "-t", "2"])
            .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "30"])
            .args(extra)
            .arg(&mp4)
            .status()
            .unwrap();
        assert!(st.success());
        let out = dir.join(format!("{name}.etfx"));
        let sum = import(&ImportConfig {
            video: mp4,
            gaze: dir.join("gaze.csv"),
            world_timestamps: Some(dir.join("world_timestamps.csv")),
            imu: None,
            output: out.clone(),
            bitrate_kbps: 800,
            made_by: "test".into(),
        })
        .unwrap();
        assert_eq!(sum.access_units, 60, "{name}");
        let (aus, idr, gaze) = decode(&out);
        assert_eq!(aus, 60);
        assert!(idr[0], "{name} starts with an IDR");
        assert_eq!(gaze.len(), n_gaze);
        for (i, (x, y, t)) in gaze.iter().enumerate() {
            assert_eq!(*x, (100.0 + i as f64 * 0.5) as f32);
            assert_eq!(*y, (50.0 + (i % 7) as f64) as f32);
            assert!(
                (t - times[i]).abs() < 20_000,
                "gaze {i}: {t} vs {}",
                times[i]
            );
        }
    }
}
