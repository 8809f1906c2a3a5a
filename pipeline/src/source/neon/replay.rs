//! `--source fixture:PATH`: a recorded fixture's packets fed in-process, without sockets, to the
//! same [`Assembler`] the live client uses, paced by their recorded arrival times or as fast as
//! possible.
//!
//! Pacing keeps the recorded spacing: packet k is due at `start + arrival_k - arrival_0`, and
//! that due time (not the moment the sleep ended) is its arrival, so scheduling noise does not
//! leak into the frame timing. The run ends at the end of the file or after `duration` of
//! recorded arrival time.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::assemble::{Assembler, DecodePolicy, LossPolicy, Sensor, StreamSetup, NOMINAL_FPS};
use super::FrameAccounting;
use crate::decode::DecoderKind;
use crate::fixture::FixtureReader;
use crate::frame::PixelFormat;
use crate::profile::{Counters, StageProfile};
use crate::run_control::Control;
use crate::source::{Source, SourceError, SourceInfo, SourceItem};
use crate::streams::StreamSet;
use crate::time::MonoNanos;

#[derive(Clone, Debug)]
pub struct FixtureConfig {
    pub path: PathBuf,
    /// Deliver packets at their recorded arrival times.
    pub paced: bool,
    /// Stop after this much recorded time (from the first packet).
    pub duration: Option<Duration>,
    pub decoder: DecoderKind,
    /// What the world stream does after packet loss.
    pub loss: LossPolicy,
    /// Decoding threads and the cheaper modes while nothing records (the decode toggles).
    pub decode: DecodePolicy,
    /// Optional streams to replay; the others' packets are skipped unread.
    pub streams: StreamSet,
}

pub struct FixtureSource {
    reader: FixtureReader<BufReader<File>>,
    /// Per fixture stream index; `None` for streams the assembler does not handle (audio, eyes).
    setups: Vec<Option<Arc<StreamSetup>>>,
    assembler: Assembler,
    info: SourceInfo,
    cfg: FixtureConfig,
    /// Host time of the first packet and its recorded arrival.
    origin: Option<(MonoNanos, u64)>,
    accounting: FrameAccounting,
    counters: Option<Arc<Counters>>,
    finished: bool,
}

impl FixtureSource {
    pub fn open(cfg: FixtureConfig) -> Result<Self, SourceError> {
        let reader = FixtureReader::open(&cfg.path)?;
        let mut setups = Vec::new();
        let mut world = None;
        for s in &reader.header().streams {
            let setup = match Sensor::from_name(&s.name).filter(|s| s.wanted(&cfg.streams)) {
                Some(sensor) => Some(Arc::new(
                    StreamSetup::from_sdp(sensor, s.sdp.as_bytes())
                        .map_err(|e| SourceError::Config(format!("fixture: {e}")))?,
                )),
                None => None,
            };
            if let Some(w) = setup.as_ref().filter(|s| s.sensor == Sensor::World) {
                world = Some(Arc::clone(w));
            }
            setups.push(setup);
        }
        for (wanted, sensor, flag) in [
            (cfg.streams.eyes, Sensor::Eyes, "--eyes on"),
            (cfg.streams.audio, Sensor::Audio, "--audio on"),
        ] {
            let present = setups.iter().flatten().any(|s| s.sensor == sensor);
            if wanted && !present {
                return Err(SourceError::Config(format!(
                    "fixture {} has no {} stream ({flag}); make one with `eyetrack fixture \
                     synth --eyes --audio`",
                    cfg.path.display(),
                    sensor.name()
                )));
            }
        }
        let world = world.ok_or_else(|| {
            SourceError::Config(format!(
                "fixture {} has no world stream",
                cfg.path.display()
            ))
        })?;
        let (width, height, sps_fps) = world.video_format().ok_or_else(|| {
            SourceError::Config(format!(
                "fixture {}: the world SDP has no readable SPS in sprop-parameter-sets",
                cfg.path.display()
            ))
        })?;
        let fps = sps_fps.or(world.framerate).unwrap_or(NOMINAL_FPS);
        let mut assembler = Assembler::new(cfg.decoder, cfg.loss, fps, 16)
            .map_err(|e| SourceError::Config(e.to_string()))?;
        assembler
            .set_decode_policy(cfg.decode)
            .map_err(|e| SourceError::Config(e.to_string()))?;
        let info = SourceInfo {
            kind: "fixture".into(),
            width,
            height,
            fps,
            format: PixelFormat::I420,
            tiled: false,
            duration_s: cfg.duration.map(|d| d.as_secs_f64()),
        };
        Ok(FixtureSource {
            reader,
            setups,
            assembler,
            info,
            cfg,
            origin: None,
            accounting: FrameAccounting::default(),
            counters: None,
            finished: false,
        })
    }

    /// Counters of the assembler so far.
    pub fn stats(&self) -> super::AssemblerStats {
        self.assembler.stats()
    }

    /// Reads and feeds one packet; false at the end.
    fn feed_one(&mut self, profile: &mut StageProfile) -> Result<bool, SourceError> {
        let Some(p) = self.reader.next_packet()? else {
            return Ok(false);
        };
        let (start, first_ns) = *self
            .origin
            .get_or_insert_with(|| (MonoNanos::now(), p.arrival_ns));
        let since_first = p.arrival_ns.saturating_sub(first_ns);
        if self
            .cfg
            .duration
            .is_some_and(|d| u128::from(since_first) >= d.as_nanos())
        {
            return Ok(false);
        }
        let Some(setup) = self
            .setups
            .get(usize::from(p.stream))
            .and_then(Option::as_ref)
        else {
            return Ok(true);
        };
        let arrival = if self.cfg.paced {
            let due = start.add_ns(since_first);
            let now = MonoNanos::now();
            if now < due {
                std::thread::sleep(Duration::from_nanos(due.since(now)));
                self.accounting.waited(MonoNanos::now().since(now));
            }
            due
        } else {
            MonoNanos::now()
        };
        let ns = self.assembler.push(setup, p.kind, p.data, arrival, profile);
        self.accounting.decoded(ns);
        Ok(true)
    }

    fn publish(&self) {
        if let Some(c) = &self.counters {
            self.assembler.publish(c);
        }
    }
}

impl Source for FixtureSource {
    fn info(&self) -> SourceInfo {
        self.info.clone()
    }

    fn delivers_h264(&self) -> bool {
        true
    }

    fn set_access_unit_sink(&mut self, sink: Arc<dyn crate::source::AccessUnitSink>) {
        self.assembler.set_sink(sink);
    }

    fn reserve_in_flight(&mut self, frames: usize) {
        self.assembler
            .preallocate(frames, self.info.width, self.info.height);
    }

    fn bind(&mut self, counters: &Arc<Counters>, control: &Arc<Control>) {
        self.counters = Some(Arc::clone(counters));
        self.assembler.set_control(Arc::clone(control));
    }

    fn next_item(&mut self, profile: &mut StageProfile) -> Result<Option<SourceItem>, SourceError> {
        self.accounting.enter();
        loop {
            if let Some(mut item) = self.assembler.pop() {
                if matches!(item, SourceItem::Frame { .. }) {
                    self.accounting.finish(&mut item, profile);
                    self.publish();
                }
                return Ok(Some(item));
            }
            if self.finished {
                self.publish();
                return Ok(None);
            }
            if !self.feed_one(profile)? {
                self.finished = true;
                self.assembler.finish(profile);
            }
        }
    }
}
