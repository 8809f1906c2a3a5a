//! `RunningPipeline::start` failing after its first threads started leaves nothing running:
//! here the recording cannot start (its root vanished after the recorder's threads were up),
//! and by the time the error comes back every thread that shared the pipeline's control
//! handle has been joined (each held a clone of it).

use std::sync::Arc;
use std::time::Duration;

use pipeline::coordinator::{Control, PipelineConfig, RunningPipeline};
use pipeline::record::RecordConfig;
use pipeline::source::synthetic::{SyntheticConfig, SyntheticSource};

#[test]
fn a_start_that_fails_after_its_threads_started_joins_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("rec");
    let mut rc = RecordConfig::new(root.clone());
    rc.fsync_every = 0;
    rc.prepare().unwrap();
    // The recorder's threads start; the recording itself then cannot create its folder.
    std::fs::remove_dir(&root).unwrap();
    let source = SyntheticSource::new(SyntheticConfig {
        width: 320,
        height: 240,
        duration: Some(Duration::from_secs(5)),
        ..SyntheticConfig::default()
    })
    .unwrap();
    let control = Arc::new(Control::default());
    let cfg = PipelineConfig {
        record: Some(rc),
        record_at_start: true,
        ..PipelineConfig::default()
    };
    let started = RunningPipeline::start(Box::new(source), cfg, Arc::clone(&control));
    let Err(e) = started else {
        panic!("the recording cannot start, so the pipeline must not");
    };
    assert!(e.to_string().contains("rec"), "{e}");
    assert_eq!(
        Arc::strong_count(&control),
        1,
        "a thread started by the failed start still runs (it holds the control handle)"
    );
    assert!(
        control.stopping(),
        "the failed start asked its threads to stop"
    );
}
