//! The run-time switches: pause, reduced processing while hidden, and what it keeps while
//! recording. Real synthetic source, real stages, offline so counts are exact.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pipeline::coordinator::{Control, PipelineConfig, RunOutcome, RunningPipeline};
use pipeline::source::synthetic::{SyntheticConfig, SyntheticSource};
use pipeline::toggles::{OnOff, Toggles};

fn run(control: Control, toggles: Toggles) -> RunOutcome {
    let source = SyntheticSource::new(SyntheticConfig {
        width: 320,
        height: 240,
        duration: Some(Duration::from_secs(2)),
        paced: false,
        ..SyntheticConfig::default()
    })
    .unwrap();
    let cfg = PipelineConfig {
        toggles,
        live: false,
        ..PipelineConfig::default()
    };
    RunningPipeline::start(Box::new(source), cfg, Arc::new(control))
        .unwrap()
        .wait()
}

#[test]
fn paused_pipeline_processes_nothing() {
    let control = Control::default();
    control.paused.store(true, Ordering::Relaxed);
    let out = run(control, Toggles::default());
    assert_eq!(out.counters.frames_acquired, 60);
    assert_eq!(out.counters.paused_skipped, 60);
    assert_eq!(out.counters.frames_processed, 0);
    assert_eq!(out.counters.frames_displayed, 0);
    assert!(out.error.is_none());
}

#[test]
fn hidden_preview_processes_every_tenth_frame() {
    let control = Control::default();
    control.preview_visible.store(false, Ordering::Relaxed);
    let out = run(control, Toggles::default());
    assert_eq!(out.counters.frames_processed, 6);
    assert_eq!(out.counters.reduced_skipped, 54);
}

#[test]
fn recording_processes_everything_and_a_hidden_preview_gets_thumbnails() {
    let control = Control::default();
    control.preview_visible.store(false, Ordering::Relaxed);
    control.recording.store(true, Ordering::Relaxed);
    let out = run(control, Toggles::default());
    // Every frame is processed (the recorder selects from all of them) ...
    assert_eq!(out.counters.frames_processed, 60);
    assert_eq!(out.counters.reduced_skipped, 0);
    // ... but nobody looks, so only every tenth is rendered.
    assert_eq!(out.counters.reduced_preview_skipped, 54);
    assert_eq!(out.counters.frames_displayed, 6);
}

#[test]
fn a_visible_preview_renders_every_recorded_frame() {
    let control = Control::default();
    control.recording.store(true, Ordering::Relaxed);
    let out = run(control, Toggles::default());
    assert_eq!(out.counters.frames_processed, 60);
    assert_eq!(out.counters.reduced_preview_skipped, 0);
    assert_eq!(out.counters.frames_displayed, 60);
}

#[test]
fn reduced_processing_off_processes_everything_while_hidden() {
    let control = Control::default();
    control.preview_visible.store(false, Ordering::Relaxed);
    let toggles = Toggles {
        reduced_processing: OnOff::Off,
        ..Toggles::default()
    };
    let out = run(control, toggles);
    assert_eq!(out.counters.frames_processed, 60);
}

#[test]
fn stop_request_ends_an_endless_source() {
    let source = SyntheticSource::new(SyntheticConfig {
        width: 320,
        height: 240,
        duration: None,
        ..SyntheticConfig::default()
    })
    .unwrap();
    let control = Arc::new(Control::default());
    let running = RunningPipeline::start(
        Box::new(source),
        PipelineConfig::default(),
        Arc::clone(&control),
    )
    .unwrap();
    // Stop once a frame has been shown (a count, not a sleep).
    let t0 = std::time::Instant::now();
    while running
        .counters()
        .frames_displayed
        .load(std::sync::atomic::Ordering::Relaxed)
        == 0
    {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "no frame shown in 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    control.request_stop();
    let out = running.wait();
    assert!(out.counters.frames_displayed > 0);
    assert!(out.error.is_none());
}
