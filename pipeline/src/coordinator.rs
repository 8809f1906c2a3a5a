//! The coordinator (the plan's GazeTracker): starts the stage threads, joins them with bounded
//! edges whose overflow policy is explicit, and gathers their profiles and counters at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::color;
use crate::frame::{Frame, FramePool, PixelFormat};
use crate::gaze_match::GazeMatcher;
use crate::overlay::{CacheStats, Hud, Overlay, OverlayStyle};
use crate::packet::{FrameMeta, FramePacket, MatchedGaze};
use crate::preview::{fit_size, Scaler};
use crate::process::{scene_height, ProcessConfig, Processed, Processor};
use crate::profile::{CounterSnapshot, Counters, LivePhases, Phase, StageProfile};
use crate::record::{RecordConfig, RecordJob, Recorder, RecorderThreads, RecordingSummary};
pub use crate::run_control::{Control, REDUCED_EVERY};
use crate::source::{AccessUnitSink, Source, SourceInfo, SourceItem};
use crate::time::MonoNanos;
use crate::toggles::Toggles;

/// What `--encoder passthrough` on a source without H.264 (the synthetic one) is told.
pub const PASSTHROUGH_NEEDS_H264: &str =
    "passthrough needs a source that delivers H.264: neon:// or fixture:";

/// How the pipeline is set up for one run.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub toggles: Toggles,
    /// The box the preview must fit in; the aspect ratio is kept.
    pub preview_box: (usize, usize),
    pub overlay_style: OverlayStyle,
    /// Per-phase histograms on (a disabled profiler costs one branch per phase).
    pub profile: bool,
    /// Capacity of the acquire -> process edge.
    pub process_queue: usize,
    /// Live sources cannot wait for us, so full edges drop their oldest frame; an offline
    /// replay blocks instead so every frame goes through every stage.
    pub live: bool,
    /// Recording set-up; `None` = this run never records. Recordings start and stop through
    /// [`RunningPipeline::recorder`].
    pub record: Option<RecordConfig>,
    /// Start a recording before the first frame flows (the CLI's `--record`), so it holds
    /// the stream from its first frame.
    pub record_at_start: bool,
    /// Per-phase totals readable while running (the control API's `/metrics`); `None` keeps
    /// the stages' profiling thread-local.
    pub live_phases: Option<Arc<LivePhases>>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            toggles: Toggles::default(),
            preview_box: (640, 360),
            overlay_style: OverlayStyle::default(),
            profile: true,
            process_queue: 4,
            live: true,
            record: None,
            record_at_start: false,
            live_phases: None,
        }
    }
}

/// The newest display-ready preview frame, for whatever shows it (terminal, browser, tests).
#[derive(Debug, Default)]
pub struct LatestPreview {
    slot: Mutex<Option<(Arc<Frame>, FrameMeta)>>,
}

impl LatestPreview {
    fn set(&self, frame: &Arc<Frame>, meta: &FrameMeta) {
        if let Ok(mut s) = self.slot.lock() {
            // Replacing drops the previous Arc, which returns that buffer to its pool.
            *s = Some((Arc::clone(frame), *meta));
        }
    }

    pub fn get(&self) -> Option<(Arc<Frame>, FrameMeta)> {
        self.slot.lock().ok().and_then(|s| s.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("could not start the {0} thread: {1}")]
    Spawn(&'static str, std::io::Error),
    #[error("overlay: {0}")]
    Overlay(#[from] crate::overlay::OverlayError),
    // Transparent: "{0}" plus the source would print the recorder's message twice in a chain.
    #[error(transparent)]
    Record(#[from] crate::record::RecordError),
}

/// Everything a finished run measured.
#[derive(Debug)]
pub struct RunOutcome {
    pub profile: StageProfile,
    pub counters: CounterSnapshot,
    pub wall: Duration,
    /// Seconds of stream delivered (frames / fps), the denominator of CPU per stream-second.
    pub stream_seconds: f64,
    pub overlay_cache: CacheStats,
    /// Frames allocated by every stage's pool: flat after warm-up.
    pub pool_allocations: u64,
    /// The first error that ended a stage early, if any.
    pub error: Option<String>,
    /// Errors on single frames that were skipped.
    pub frame_errors: u64,
    /// The recording still running when the stream ended, closed by `wait`.
    pub recording: Option<RecordingSummary>,
    /// The fault that ended a recording by itself (streaming went on), if any.
    pub record_error: Option<String>,
}

/// A started pipeline.
pub struct RunningPipeline {
    control: Arc<Control>,
    counters: Arc<Counters>,
    latest: Arc<LatestPreview>,
    info: SourceInfo,
    started: Instant,
    acquire: JoinHandle<StageResult>,
    process: JoinHandle<StageResult>,
    preview: JoinHandle<StageResult>,
    recorder: Option<(Arc<Recorder>, RecorderThreads)>,
}

struct StageResult {
    profile: StageProfile,
    error: Option<String>,
    frame_errors: u64,
    pool_allocations: u64,
    overlay_cache: Option<CacheStats>,
}

impl StageResult {
    fn new(profile: StageProfile) -> Self {
        StageResult {
            profile,
            error: None,
            frame_errors: 0,
            pool_allocations: 0,
            overlay_cache: None,
        }
    }
}

/// A bounded channel end with an explicit overflow policy and a drop counter.
struct Edge<T> {
    tx: Sender<T>,
    /// A receiver clone the sender uses to evict the oldest item (drop-oldest edges only: a
    /// blocking edge must see its consumer disappear).
    evict: Option<Receiver<T>>,
}

impl<T> Edge<T> {
    /// Returns false when the consumer is gone.
    fn send(&self, mut item: T, drops: &AtomicU64) -> bool {
        let Some(evict) = &self.evict else {
            return self.tx.send(item).is_ok();
        };
        loop {
            match self.tx.try_send(item) {
                Ok(()) => return true,
                Err(TrySendError::Full(back)) => {
                    if evict.try_recv().is_ok() {
                        Counters::add(drops, 1);
                    }
                    item = back;
                }
                Err(TrySendError::Disconnected(_)) => return false,
            }
        }
    }
}

fn edge<T>(capacity: usize, drop_oldest: bool) -> (Edge<T>, Receiver<T>) {
    let (tx, rx) = bounded(capacity.max(1));
    (
        Edge {
            tx,
            evict: drop_oldest.then(|| rx.clone()),
        },
        rx,
    )
}

struct PreviewJob {
    processed: Processed,
    meta: FrameMeta,
    gaze: Option<MatchedGaze>,
    duplicate: bool,
}

impl RunningPipeline {
    /// Starts the stage threads on `source`.
    pub fn start(
        mut source: Box<dyn Source>,
        cfg: PipelineConfig,
        control: Arc<Control>,
    ) -> Result<Self, PipelineError> {
        let info = source.info();
        source.reserve_in_flight(frames_in_flight(&cfg));
        let counters = Arc::new(Counters::default());
        source.bind(&counters, &control);
        let latest = Arc::new(LatestPreview::default());
        // Built here so a bad style is an error before any thread starts.
        let overlay = Overlay::new(cfg.toggles.overlay, cfg.overlay_style.clone())?;

        let scene = (
            info.width,
            if info.tiled {
                scene_height(info.height)
            } else {
                info.height
            },
        );
        if cfg.record.as_ref().is_some_and(|r| r.passthrough) && !source.delivers_h264() {
            return Err(PipelineError::Record(crate::record::RecordError::Config(
                PASSTHROUGH_NEEDS_H264.into(),
            )));
        }
        let recorder = match &cfg.record {
            Some(rc) => Some(Recorder::spawn(
                rc.clone(),
                scene,
                info.fps,
                Arc::clone(&control),
                Arc::clone(&counters),
                StageProfile::with_live(cfg.profile, cfg.live_phases.clone()),
                !cfg.live,
            )?),
            None => None,
        };
        // From here on every thread started is the guard's: a later step that fails stops and
        // joins them (and the recorder) before the error is returned, so nothing is left
        // running detached.
        let mut started = StartGuard {
            control: Arc::clone(&control),
            stages: Vec::with_capacity(3),
            recorder,
        };
        let rec = started.recorder.as_ref().map(|(r, _)| Arc::clone(r));
        if let Some(r) = rec.as_ref().filter(|r| r.config().passthrough) {
            source.set_access_unit_sink(Arc::clone(r) as Arc<dyn AccessUnitSink>);
        }
        if cfg.record_at_start {
            if let Some(r) = &rec {
                if let Err(e) = r.start() {
                    // The source may hold the recorder (its access-unit sink): let go of it
                    // first, so the guard can join the recorder's threads.
                    drop(source);
                    return Err(e.into());
                }
            }
        }

        let (to_process, process_rx) = edge::<FramePacket>(cfg.process_queue, cfg.live);
        // Live, the preview edge keeps only the newest frame (a late preview is worse than
        // none); offline it blocks, so every frame is measured through every stage.
        let (to_preview, preview_rx) = edge::<PreviewJob>(1, cfg.live);

        let acquire = {
            let (control, counters, profile) = (
                Arc::clone(&control),
                Arc::clone(&counters),
                StageProfile::with_live(cfg.profile, cfg.live_phases.clone()),
            );
            let rec = rec.clone();
            spawn("acquire", move || {
                acquire_stage(source, to_process, &control, &counters, profile, rec)
            })?
        };
        started.stages.push(acquire);
        let process = {
            let (control, counters) = (Arc::clone(&control), Arc::clone(&counters));
            let pcfg = ProcessConfig::from_toggles(&cfg.toggles, info.tiled);
            let reduced = cfg.toggles.reduced_processing.is_on();
            let profile = StageProfile::with_live(cfg.profile, cfg.live_phases.clone());
            let rec = rec.clone();
            spawn("process", move || {
                let setup = ProcessSetup {
                    cfg: pcfg,
                    reduced_processing: reduced,
                    profile,
                    recorder: rec,
                };
                process_stage(process_rx, to_preview, setup, &control, &counters)
            })?
        };
        started.stages.push(process);
        let preview = {
            let (control, counters, latest) = (
                Arc::clone(&control),
                Arc::clone(&counters),
                Arc::clone(&latest),
            );
            let scene_w = info.width as f32;
            let cfg = cfg.clone();
            spawn("preview", move || {
                preview_stage(
                    preview_rx, overlay, &cfg, scene_w, &control, &counters, &latest,
                )
            })?
        };
        drop(rec);
        let (stages, recorder) = started.defuse();
        let Ok([acquire, process]) = <[_; 2]>::try_from(stages) else {
            unreachable!("both stages were pushed above");
        };
        Ok(RunningPipeline {
            control,
            counters,
            latest,
            info,
            started: Instant::now(),
            acquire,
            process,
            preview,
            recorder,
        })
    }

    /// Starts and stops recordings while the pipeline runs (`None` unless configured).
    pub fn recorder(&self) -> Option<&Arc<Recorder>> {
        self.recorder.as_ref().map(|(r, _)| r)
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
    pub fn control(&self) -> &Arc<Control> {
        &self.control
    }
    pub fn latest_preview(&self) -> &Arc<LatestPreview> {
        &self.latest
    }
    pub fn source_info(&self) -> &SourceInfo {
        &self.info
    }
    pub fn is_finished(&self) -> bool {
        self.preview.is_finished()
    }

    /// Waits for the stream to end (or a stop request) and gathers the results.
    pub fn wait(self) -> RunOutcome {
        let mut results = Vec::with_capacity(3);
        for (name, handle) in [
            ("acquire", self.acquire),
            ("process", self.process),
            ("preview", self.preview),
        ] {
            match handle.join() {
                Ok(r) => results.push(r),
                Err(_) => {
                    let mut r = StageResult::new(StageProfile::new(false));
                    r.error = Some(format!("the {name} stage panicked"));
                    results.push(r);
                }
            }
        }
        let mut profile = StageProfile::new(false);
        let mut error = None;
        let mut frame_errors = 0;
        let mut pool_allocations = 0;
        let mut overlay_cache = CacheStats::default();
        for r in &results {
            profile.merge(&r.profile);
            if error.is_none() {
                error.clone_from(&r.error);
            }
            frame_errors += r.frame_errors;
            pool_allocations += r.pool_allocations;
            if let Some(c) = r.overlay_cache {
                overlay_cache = c;
            }
        }
        let (mut recording, mut record_error) = (None, None);
        if let Some((rec, threads)) = self.recorder {
            record_error = rec.last_error();
            let (p, summary) = rec.shutdown(threads);
            profile.merge(&p);
            recording = summary;
        }
        let counters = self.counters.snapshot();
        let fps = if self.info.fps > 0.0 {
            self.info.fps
        } else {
            30.0
        };
        RunOutcome {
            profile,
            counters,
            wall: self.started.elapsed(),
            stream_seconds: counters.frames_acquired as f64 / fps,
            overlay_cache,
            pool_allocations,
            error,
            frame_errors,
            recording,
            record_error,
        }
    }
}

/// Source frames the stages can hold at once: the process queue, one in the acquire stage's
/// hand, one being processed, the duplicate detector's last result, one on the preview edge,
/// one being rendered, the preview's last scaled source, and its last job (kept to repaint a
/// "disconnected" HUD). A recorder adds its queue and the frame in its hand.
fn frames_in_flight(cfg: &PipelineConfig) -> usize {
    cfg.process_queue.max(1) + 7 + cfg.record.as_ref().map_or(0, |r| r.queue.max(1) + 1)
}

/// A recorder and the threads behind it.
type RecorderParts = (Arc<Recorder>, RecorderThreads);

/// What [`RunningPipeline::start`] has started so far; dropped on an error path it stops the
/// stages, joins them and shuts the recorder down (a recording already started is finished
/// and its manifest written).
struct StartGuard {
    control: Arc<Control>,
    stages: Vec<JoinHandle<StageResult>>,
    recorder: Option<RecorderParts>,
}

impl StartGuard {
    /// Start succeeded: hands over what runs.
    fn defuse(mut self) -> (Vec<JoinHandle<StageResult>>, Option<RecorderParts>) {
        (std::mem::take(&mut self.stages), self.recorder.take())
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if self.stages.is_empty() && self.recorder.is_none() {
            return;
        }
        self.control.request_stop();
        // A stage whose neighbour never started sees its channel closed and ends; the stop
        // request ends the acquire loop even while its output still has room.
        for stage in self.stages.drain(..) {
            let _ = stage.join();
        }
        if let Some((rec, threads)) = self.recorder.take() {
            let _ = rec.shutdown(threads);
        }
    }
}

fn spawn(
    name: &'static str,
    f: impl FnOnce() -> StageResult + Send + 'static,
) -> Result<JoinHandle<StageResult>, PipelineError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(|e| PipelineError::Spawn(name, e))
}

fn acquire_stage(
    mut source: Box<dyn Source>,
    out: Edge<FramePacket>,
    control: &Control,
    counters: &Counters,
    profile: StageProfile,
    recorder: Option<Arc<Recorder>>,
) -> StageResult {
    let mut result = StageResult::new(profile);
    let mut matcher = GazeMatcher::new();
    while !control.stopping() {
        let item = match source.next_item(&mut result.profile) {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(e) => {
                result.error = Some(format!("source: {e}"));
                break;
            }
        };
        match item {
            SourceItem::Gaze(g) => {
                Counters::add(&counters.gaze_samples, 1);
                matcher.push(g);
                if let Some(r) = &recorder {
                    r.gaze(g);
                }
            }
            SourceItem::Imu(s) => {
                Counters::add(&counters.imu_samples, 1);
                if let Some(r) = &recorder {
                    r.imu(s);
                }
            }
            SourceItem::Event {
                kind,
                detail,
                device_time,
                end_time,
            } => {
                if let Some(r) = &recorder {
                    // Not recording: nothing to write to. A full queue is counted by the
                    // recorder (`record_events_dropped`); the stream itself goes on.
                    let _ = r.event_span(
                        kind,
                        detail,
                        device_time.map(|t| t.0),
                        end_time.map(|t| t.0),
                    );
                }
            }
            SourceItem::EyeFrame { frame, meta } => {
                if let Some(r) = &recorder {
                    r.eye_frame(frame, meta);
                }
            }
            SourceItem::Audio { block, meta } => {
                if let Some(r) = &recorder {
                    r.audio(block, meta);
                }
            }
            SourceItem::Frame { frame, meta } => {
                Counters::add(&counters.frames_acquired, 1);
                Counters::add(&counters.wait_ns, meta.wait_ns);
                let gaze = matcher.match_frame(meta.device_time);
                match &gaze {
                    Some(g) => {
                        let dt = g.dt_ns.unsigned_abs();
                        Counters::add(&counters.gaze_dt_abs_sum_ns, dt);
                        counters.gaze_dt_abs_max_ns.fetch_max(dt, Ordering::Relaxed);
                    }
                    None => Counters::add(&counters.frames_without_gaze, 1),
                }
                let packet = FramePacket { frame, meta, gaze };
                if !out.send(packet, &counters.drops_process_edge) {
                    break;
                }
            }
        }
    }
    control.request_stop();
    result
}

/// What the process stage is set up with.
struct ProcessSetup {
    cfg: ProcessConfig,
    reduced_processing: bool,
    profile: StageProfile,
    recorder: Option<Arc<Recorder>>,
}

fn process_stage(
    rx: Receiver<FramePacket>,
    out: Edge<PreviewJob>,
    setup: ProcessSetup,
    control: &Control,
    counters: &Counters,
) -> StageResult {
    let ProcessSetup {
        cfg,
        reduced_processing,
        profile,
        recorder,
    } = setup;
    let mut result = StageResult::new(profile);
    let mut processor = Processor::new(cfg);
    if let Some(r) = &recorder {
        processor.hold_extra(r.config().queue.max(1) + 1);
    }
    let mut last_reduced: Option<u64> = None;
    for packet in rx.iter() {
        if control.paused.load(Ordering::Relaxed) {
            Counters::add(&counters.paused_skipped, 1);
            continue;
        }
        // Plan 1.6: nobody is looking, so the preview needs only a thumbnail; and when nothing
        // records either, nothing else needs the frame at all.
        let hidden = !control.preview_visible.load(Ordering::Relaxed);
        let recording = control.recording.load(Ordering::Relaxed);
        let thumbnails_only = reduced_processing && hidden;
        // One frame per REDUCED_EVERY camera frames, counted from the last thumbnail rather
        // than by index, so the IDR-only thumbnails of `--reduced-decode` (whose indices follow
        // the device's keyframe interval) are all kept.
        let off_beat = thumbnails_only
            && last_reduced.is_some_and(|last: u64| {
                packet.meta.camera_index < last.saturating_add(REDUCED_EVERY)
                    && packet.meta.camera_index >= last
            });
        if off_beat && !recording {
            Counters::add(&counters.reduced_skipped, 1);
            continue;
        }
        if !off_beat {
            last_reduced = thumbnails_only.then_some(packet.meta.camera_index);
        }
        let span = result.profile.start();
        let processed = processor.process(&packet.frame);
        result.profile.finish(Phase::Process, span);
        let (processed, duplicate) = match processed {
            Ok(p) => p,
            Err(e) => {
                result.frame_errors += 1;
                if result.error.is_none() {
                    result.error = Some(format!("process: {e}"));
                }
                continue;
            }
        };
        Counters::add(&counters.frames_processed, 1);
        if duplicate {
            Counters::add(&counters.duplicates_skipped, 1);
        }
        if recording {
            if let Some(r) = &recorder {
                r.offer(RecordJob {
                    processed: processed.clone(),
                    meta: packet.meta,
                    gaze: packet.gaze,
                });
            }
        }
        // Recorded above; the hidden preview renders only the thumbnails (a 1600x1200 scale
        // per frame was the largest cost of a 5 fps recording besides decode and encode).
        if off_beat {
            Counters::add(&counters.reduced_preview_skipped, 1);
            continue;
        }
        let job = PreviewJob {
            processed,
            meta: packet.meta,
            gaze: packet.gaze,
            duplicate,
        };
        if !out.send(job, &counters.drops_preview_edge) {
            break;
        }
    }
    result.pool_allocations = processor.pool_allocations();
    control.request_stop();
    result
}

/// Scales, overlays and publishes. Keeps the last scaled image so a duplicate frame costs a copy
/// instead of a resize, while the gaze marker is still drawn fresh.
struct PreviewState {
    scaler: Scaler,
    overlay: Overlay,
    scaled: Frame,
    scaled_from: Option<Processed>,
    pool: FramePool,
    fps: FpsMeter,
    /// Resizes done (a duplicate frame reuses the last one).
    scales: u64,
    /// The preview box and HUD switch in effect, and the [`Control::live`] generation they
    /// came from.
    preview_box: (usize, usize),
    hud: bool,
    live_generation: u64,
}

impl PreviewState {
    /// Takes a run-time configuration change (a rare event: the overlay's sprites are rebuilt).
    fn follow_live(&mut self, control: &Control, cfg: &PipelineConfig) -> Result<(), RenderError> {
        let g = control.live.generation();
        if g == self.live_generation {
            return Ok(());
        }
        self.live_generation = g;
        if let Some(v) = control.live.get() {
            let style = v.overlay_style(&cfg.overlay_style);
            self.overlay = Overlay::new(cfg.toggles.overlay, style)?;
            self.preview_box = v.preview_size;
            self.hud = v.hud;
        }
        Ok(())
    }
}

fn preview_stage(
    rx: Receiver<PreviewJob>,
    overlay: Overlay,
    cfg: &PipelineConfig,
    scene_width: f32,
    control: &Control,
    counters: &Counters,
    latest: &LatestPreview,
) -> StageResult {
    let mut result = StageResult::new(StageProfile::with_live(
        cfg.profile,
        cfg.live_phases.clone(),
    ));
    let mut st = PreviewState {
        scaler: Scaler::new(cfg.toggles.resize),
        overlay,
        scaled: Frame::new(PixelFormat::Gray8, 1, 1),
        scaled_from: None,
        // The published preview and the one being rendered, plus one for a reader of the latest.
        pool: FramePool::new(3),
        fps: FpsMeter::default(),
        scales: 0,
        preview_box: cfg.preview_box,
        hud: cfg.overlay_style.hud,
        live_generation: 0,
    };
    // The last job, re-rendered with a "disconnected" HUD while a network source has lost its
    // device (no new frames would ever repaint the preview otherwise).
    let mut last: Option<PreviewJob> = None;
    loop {
        let job = match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(job) => job,
            Err(RecvTimeoutError::Timeout) => {
                if control.disconnected.load(Ordering::Relaxed) {
                    if let Some(job) = &last {
                        let r =
                            render(&mut st, job, cfg, scene_width, &mut result.profile, control);
                        if let Ok(frame) = r {
                            latest.set(&frame, &job.meta);
                        }
                    }
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let job = last.insert(job);
        match render(&mut st, job, cfg, scene_width, &mut result.profile, control) {
            Ok(frame) => {
                let now = MonoNanos::now();
                result
                    .profile
                    .record_ns(Phase::EndToEnd, now.since(job.meta.capture_mono));
                latest.set(&frame, &job.meta);
                Counters::add(&counters.frames_displayed, 1);
            }
            Err(e) => {
                result.frame_errors += 1;
                if result.error.is_none() {
                    result.error = Some(format!("preview: {e}"));
                }
            }
        }
    }
    result.pool_allocations = st.pool.allocations();
    result.overlay_cache = Some(st.overlay.cache_stats());
    control.request_stop();
    result
}

#[derive(Debug, thiserror::Error)]
enum RenderError {
    #[error("{0}")]
    Scale(#[from] crate::preview::PreviewError),
    #[error("{0}")]
    Color(#[from] color::ColorError),
    #[error("{0}")]
    Overlay(#[from] crate::overlay::OverlayError),
}

fn render(
    st: &mut PreviewState,
    job: &PreviewJob,
    cfg: &PipelineConfig,
    scene_width: f32,
    profile: &mut StageProfile,
    control: &Control,
) -> Result<Arc<Frame>, RenderError> {
    st.follow_live(control, cfg)?;
    let span = profile.start();
    let src = job.processed.view();
    let (w, h) = fit_size(src.width, src.height, st.preview_box.0, st.preview_box.1);
    let reuse = st
        .scaled_from
        .as_ref()
        .is_some_and(|prev| prev.same_as(&job.processed))
        && st.scaled.width() == w
        && st.scaled.height() == h;
    if !reuse {
        st.scaler.scale(&src, &mut st.scaled, w, h)?;
        st.scaled_from = Some(job.processed.clone());
        st.scales += 1;
    }
    // The display owns its frame; gray gets colour only here, at preview size (lazy colour).
    let out_format = match st.scaled.format() {
        PixelFormat::Gray8 => PixelFormat::I420,
        f => f,
    };
    let fps = st.fps.tick(job.meta.received_mono);
    let state = if control.disconnected.load(Ordering::Relaxed) {
        "disconnected"
    } else if control.recording.load(Ordering::Relaxed) {
        "recording"
    } else if job.duplicate {
        "streaming (repeat)"
    } else {
        "streaming"
    };
    let hud_on = st.hud;
    let PreviewState {
        scaled,
        overlay,
        pool,
        ..
    } = st;
    // Everything that writes the display frame happens while the pool lends it out uniquely.
    pool.fill::<RenderError>(out_format, w, h, |f| {
        if scaled.format() == out_format {
            f.copy_from(&scaled.view());
        } else {
            color::convert(&scaled.view(), f, out_format)?;
        }
        profile.finish(Phase::Preview, span);

        let span = profile.start();
        if let Some(g) = job.gaze {
            let scale = w as f32 / scene_width.max(1.0);
            overlay.draw_gaze(f, g.sample.x * scale, g.sample.y * scale, g.sample.worn)?;
        }
        if hud_on {
            let hud = Hud {
                fps,
                frame_index: job.meta.camera_index,
                state,
            };
            overlay.draw_hud(f, &hud)?;
        }
        profile.finish(Phase::Overlay, span);
        Ok(())
    })
}

/// Frames per second over the last second of source time, for the HUD.
#[derive(Debug, Default)]
struct FpsMeter {
    window_start: Option<MonoNanos>,
    frames: u32,
    fps: f32,
}

impl FpsMeter {
    fn tick(&mut self, t: MonoNanos) -> f32 {
        let start = *self.window_start.get_or_insert(t);
        self.frames += 1;
        let elapsed = t.since(start);
        if elapsed >= 1_000_000_000 {
            self.fps = self.frames as f32 * 1e9 / elapsed as f32;
            self.window_start = Some(t);
            self.frames = 0;
        }
        self.fps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_oldest_edge_keeps_newest_and_counts() {
        let (e, rx) = edge::<u32>(2, true);
        let drops = AtomicU64::new(0);
        for i in 0..5 {
            assert!(e.send(i, &drops));
        }
        assert_eq!(drops.load(Ordering::Relaxed), 3);
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![3, 4]);
    }

    #[test]
    fn blocking_edge_reports_a_gone_consumer() {
        let (e, rx) = edge::<u32>(1, false);
        let drops = AtomicU64::new(0);
        assert!(e.send(1, &drops));
        drop(rx);
        assert!(!e.send(2, &drops));
    }

    fn job(processed: &Processed, x: f32, duplicate: bool) -> PreviewJob {
        let time = crate::time::UnixNanos(1_000);
        PreviewJob {
            processed: processed.clone(),
            meta: FrameMeta {
                device_time: time,
                capture_mono: MonoNanos::now(),
                received_mono: MonoNanos::now(),
                camera_index: 1,
                wait_ns: 0,
            },
            gaze: Some(MatchedGaze {
                sample: crate::sensors::GazeSample {
                    time,
                    x,
                    y: 600.0,
                    worn: true,
                    pupil_mm: None,
                },
                dt_ns: 0,
            }),
            duplicate,
        }
    }

    #[test]
    fn a_duplicate_reuses_the_scaled_image_but_moves_the_gaze_marker() {
        let cfg = PipelineConfig::default();
        let mut raw = Frame::new(PixelFormat::I420, 1600, 1200);
        raw.data_mut()
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 251) as u8);
        let processed = Processed {
            frame: Arc::new(raw),
            top: 0,
            height: 1200,
        };
        let mut st = PreviewState {
            scaler: Scaler::new(cfg.toggles.resize),
            overlay: Overlay::new(cfg.toggles.overlay, cfg.overlay_style.clone()).unwrap(),
            scaled: Frame::new(PixelFormat::Gray8, 1, 1),
            scaled_from: None,
            pool: FramePool::new(4),
            fps: FpsMeter::default(),
            scales: 0,
            preview_box: cfg.preview_box,
            hud: cfg.overlay_style.hud,
            live_generation: 0,
        };
        let mut profile = StageProfile::new(true);
        let control = Control::default();
        let a = render(
            &mut st,
            &job(&processed, 400.0, false),
            &cfg,
            1600.0,
            &mut profile,
            &control,
        )
        .unwrap();
        let b = render(
            &mut st,
            &job(&processed, 1200.0, true),
            &cfg,
            1600.0,
            &mut profile,
            &control,
        )
        .unwrap();
        assert_eq!(st.scales, 1, "the duplicate was not scaled again");
        assert_eq!((a.width(), a.height()), (480, 360));
        // The marker moved from x=120 to x=360 in preview pixels: the pixels there differ.
        let y = 180;
        let row_a = a.plane(0).row(y);
        let row_b = b.plane(0).row(y);
        assert_ne!(row_a[100..140], row_b[100..140]);
        assert_ne!(row_a[340..380], row_b[340..380]);
        // Away from both markers and the HUD the image is the same.
        assert_eq!(row_a[200..300], row_b[200..300]);
        assert_eq!(profile.count(Phase::Preview), 2);
        assert_eq!(profile.count(Phase::Overlay), 2);
    }

    #[test]
    fn fps_meter_measures_a_second() {
        let mut m = FpsMeter::default();
        let mut fps = 0.0;
        for i in 0..=31u64 {
            fps = m.tick(MonoNanos(i * 33_333_333));
        }
        assert!((fps - 31.0).abs() < 1.5, "{fps}");
    }
}
