//! Measures the H.264 decoder backends back to back on the Neon-like clip (1600x1200, 30 fps,
//! Main profile, 5 Mbit/s, no B-frames): CPU time (user + sys, all threads) and wall time per
//! frame for each in-process backend, beside the floor of the ffmpeg CLI decoding the same
//! clip to nothing on one thread. Run through `ci/measure-decode` (release build).
//!
//! Configurations are interleaved within each repeat so slow drifts of a shared machine hit all
//! of them alike; the table shows the median of the repeats.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use bench_scenarios::h264clip::{self, NEON_SCENE};
use pipeline::decode::{self, annexb::split_access_units, DecoderKind, DecoderOptions};
use pipeline::frame::FramePool;
use pipeline::resources::sample_tree;

#[derive(Clone, Copy)]
enum Config {
    InProcess(DecoderKind, usize),
    FfmpegCli,
}

impl Config {
    fn label(self) -> String {
        match self {
            Config::InProcess(kind, threads) => format!("{kind} (in-process), {threads} thread(s)"),
            Config::FfmpegCli => "ffmpeg -threads 1 -f null (floor)".into(),
        }
    }
}

/// (CPU seconds, wall seconds, frames) of one decode of the whole clip.
fn in_process(kind: DecoderKind, threads: usize, aus: &[&[u8]]) -> anyhow::Result<(f64, f64, u64)> {
    let options = DecoderOptions {
        threads,
        low_delay: true,
        slice_threads: false,
        zero_copy: false,
    };
    let mut dec = decode::open::<usize>(kind, &options)?;
    let mut pool = FramePool::new(2 + threads);
    let mut out = Vec::with_capacity(4);
    let cpu0 = sample_tree()?.cpu_seconds;
    let t0 = Instant::now();
    for (i, au) in aus.iter().enumerate() {
        dec.decode(au, i, &mut pool, &mut out)?;
        out.clear();
    }
    dec.flush(&mut pool, &mut out)?;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = sample_tree()?.cpu_seconds - cpu0;
    Ok((cpu, wall, dec.stats().frames))
}

/// CPU and wall seconds of `ffmpeg -threads 1 -i clip [extra] -f null -`.
fn ffmpeg(clip: &str, extra: &[&str]) -> anyhow::Result<(f64, f64)> {
    let cpu0 = sample_tree()?.cpu_seconds;
    let t0 = Instant::now();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-threads", "1", "-i", clip])
        .args(extra)
        .args(["-f", "null", "-"])
        .status()
        .context("running ffmpeg")?;
    let wall = t0.elapsed().as_secs_f64();
    if !status.success() {
        bail!("ffmpeg failed: {status}");
    }
    Ok((sample_tree()?.cpu_seconds - cpu0, wall))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Whether openh264's x86 assembly is in this binary (nasm was found when it was built).
fn openh264_asm() -> &'static str {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .unwrap_or_default();
    if memchr_find(&exe, b"WelsDecoderI16x16LumaPredV_sse2") {
        "x86 SIMD assembly linked (nasm)"
    } else if memchr_find(&exe, b"WelsDecoderI16x16LumaPredV_AArch64_neon") {
        "AArch64 NEON assembly linked (assembled by cc)"
    } else {
        "NO assembly symbols found: built without nasm (slow C), or the binary is stripped"
    }
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn main() -> anyhow::Result<()> {
    let usage = "usage: measure_decode [repeats] [FIXTURE.etfx]";
    let repeats: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()
        .context(usage)?
        .unwrap_or(3);
    // With a fixture: its world stream exactly as the live client depacketizes it, written out
    // as Annex B so the ffmpeg CLI floor decodes the same bytes.
    let (path, made_with, seconds) = match std::env::args().nth(2) {
        Some(fixture) => {
            let (annexb, secs) = fixture_world_stream(std::path::Path::new(&fixture))?;
            let out = std::env::temp_dir().join("eyetrack-measure-decode-fixture.h264");
            std::fs::write(&out, annexb)?;
            (out, format!("the world stream of {fixture}"), secs)
        }
        None => (
            h264clip::clip(&NEON_SCENE)?,
            format!("ffmpeg {}", NEON_SCENE.ffmpeg_args("<out>").join(" ")),
            f64::from(NEON_SCENE.seconds),
        ),
    };
    let clip = path.to_string_lossy().to_string();
    let bytes = std::fs::read(&path)?;
    let aus: Vec<&[u8]> = split_access_units(&bytes).collect();
    let frames = aus.len() as f64;
    println!(
        "clip: {} ({} access units, {:.2} Mbit/s)\n  made with: {made_with}",
        clip,
        aus.len(),
        bytes.len() as f64 * 8.0 / seconds / 1e6,
    );
    // arm64 kernels print no "model name"; the platform probe decodes the core from its ids.
    let cpu_model = pipeline::platform::detect()
        .cpu_model
        .clone()
        .unwrap_or_else(|| "unknown".into());
    println!(
        "machine: {} x {} ({}), openh264: {}\nrepeats: {repeats}, interleaved; medians\n",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model,
        std::env::consts::ARCH,
        openh264_asm()
    );
    let configs = [
        Config::InProcess(DecoderKind::Libav, 1),
        Config::InProcess(DecoderKind::Openh264, 1),
        Config::FfmpegCli,
        Config::InProcess(DecoderKind::Libav, 2),
    ];
    let mut cpu = vec![Vec::new(); configs.len()];
    let mut wall = vec![Vec::new(); configs.len()];
    // ffmpeg's fixed cost (start-up, probing), measured once per repeat and subtracted
    for _ in 0..repeats {
        for (i, config) in configs.iter().enumerate() {
            let (c, w) = match *config {
                Config::InProcess(kind, threads) => {
                    let (c, w, n) = in_process(kind, threads, &aus)?;
                    if n != aus.len() as u64 {
                        bail!("{kind} decoded {n} of {} frames", aus.len());
                    }
                    (c / frames, w / frames)
                }
                Config::FfmpegCli => {
                    let (c_all, w_all) = ffmpeg(&clip, &[])?;
                    let (c_one, w_one) = ffmpeg(&clip, &["-frames:v", "1"])?;
                    (
                        (c_all - c_one) / (frames - 1.0),
                        (w_all - w_one) / (frames - 1.0),
                    )
                }
            };
            cpu[i].push(c * 1e3);
            wall[i].push(w * 1e3);
        }
    }
    println!("| decoder | CPU ms/frame (user+sys) | wall ms/frame |");
    println!("|---|---:|---:|");
    for (i, config) in configs.iter().enumerate() {
        println!(
            "| {} | {:.2} | {:.2} |",
            config.label(),
            median(cpu[i].clone()),
            median(wall[i].clone())
        );
    }
    Ok(())
}

/// The world stream of an `.etfx` fixture, RTP-depacketized by the live client's depacketizer,
/// as one Annex B byte stream, and its length in seconds (from the 90 kHz RTP timestamps).
fn fixture_world_stream(path: &std::path::Path) -> anyhow::Result<(Vec<u8>, f64)> {
    use pipeline::fixture::{FixtureReader, PacketKind};
    use pipeline::neon::rtp::RtpPacket;
    use pipeline::neon::Depacketizer;
    let mut r = FixtureReader::open(path)?;
    let world = r
        .header()
        .stream_index("world")
        .context("the fixture has no world stream")?;
    let mut d = Depacketizer::new();
    let mut out = Vec::new();
    let (mut first, mut last) = (None, 0u32);
    while let Some(p) = r.next_packet()? {
        if p.stream != world || p.kind != PacketKind::Rtp {
            continue;
        }
        let pkt = RtpPacket::parse(p.data)?;
        first.get_or_insert(pkt.timestamp);
        last = pkt.timestamp;
        d.push(&pkt)?;
        while let Some(au) = d.pull() {
            out.extend_from_slice(au.data);
        }
    }
    d.flush();
    while let Some(au) = d.pull() {
        out.extend_from_slice(au.data);
    }
    let ticks = last.wrapping_sub(first.unwrap_or(last));
    Ok((out, f64::from(ticks) / 90_000.0 + 1.0 / 30.0))
}
