//! Proves the steady state allocates nothing per frame: the whole pipeline (synthetic source,
//! process, preview, overlay, profiler) runs under a counting global allocator.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipeline::coordinator::{Control, PipelineConfig, RunningPipeline};
use pipeline::source::synthetic::{SyntheticConfig, SyntheticFormat, SyntheticSource};
use pipeline::toggles::{Preset, Toggles};

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, ALLOCS};

#[global_allocator]
static GLOBAL: Counting = Counting;

fn wait_for(running: &RunningPipeline, displayed: u64) -> u64 {
    let t0 = Instant::now();
    loop {
        let n = running.counters().frames_displayed.load(Ordering::Relaxed);
        if n >= displayed || running.is_finished() {
            return n;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "pipeline stalled at {n} frames"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The counter is global, so the tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn steady_state_allocations(toggles: Toggles, format: SyntheticFormat) -> (u64, u64) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let source = SyntheticSource::new(SyntheticConfig {
        width: 640,
        height: 480,
        format,
        fps: 240.0,
        duration: Some(Duration::from_secs(60)),
        paced: true,
        ..SyntheticConfig::default()
    })
    .expect("valid synthetic config");
    // Paced, as a device delivers: every stage waits for its input from the first frame on.
    // (crossbeam allocates once per thread and channel the first time a thread blocks; an
    // offline run can first block at any time, which would put that one-off inside the window.)
    let cfg = PipelineConfig {
        toggles,
        live: true,
        ..PipelineConfig::default()
    };
    let control = Arc::new(Control::default());
    let running = RunningPipeline::start(Box::new(source), cfg, Arc::clone(&control))
        .expect("pipeline starts");
    let warm = wait_for(&running, 100);
    let before = ALLOCS.load(Ordering::Relaxed);
    let end = wait_for(&running, warm + 300);
    let after = ALLOCS.load(Ordering::Relaxed);
    control.request_stop();
    let outcome = running.wait();
    assert!(outcome.error.is_none(), "{:?}", outcome.error);
    (after - before, end - warm)
}

#[test]
fn optimized_pipeline_allocates_nothing_per_frame() {
    let (allocs, frames) = steady_state_allocations(Toggles::default(), SyntheticFormat::I420);
    assert!(frames >= 300, "only {frames} frames measured");
    assert_eq!(
        allocs, 0,
        "{allocs} allocations over {frames} steady-state frames"
    );
}

#[test]
fn baseline_pipeline_allocates_nothing_per_frame() {
    // The plan's current behaviour (BGR path, copy always, draw) must not allocate either:
    // the comparison would otherwise measure the allocator, not the toggles.
    let (allocs, frames) =
        steady_state_allocations(Preset::Baseline.toggles(), SyntheticFormat::Tiled);
    assert!(frames >= 300, "only {frames} frames measured");
    assert_eq!(
        allocs, 0,
        "{allocs} allocations over {frames} steady-state frames"
    );
}
