//! The in-process CPU sampler behind `--flamegraph`: pprof's SIGPROF sampling, our timing of its
//! signal handler (the sampler's own overhead), and the flamegraph SVG rendered by inferno.
//!
//! How the overhead is measured: pprof installs a SIGPROF handler and an `ITIMER_PROF` timer
//! (one tick per `1/frequency` CPU-seconds of the whole process). Right after, we put our own
//! handler in front of pprof's: it reads `CLOCK_MONOTONIC`, calls pprof's handler (unwind,
//! thread name, store the stack), reads the clock again and adds the difference to a counter.
//! `overhead_cpu_seconds` is that sum over the run: the time spent inside the sampler's signal
//! handler. It is wall time inside the handler, so it upper-bounds the handler's CPU time (a
//! handler preempted half-way counts its wait too). Not included: the kernel's own signal
//! delivery and return per tick (not measured), and symbolization plus SVG writing, which happen
//! after the run and are reported apart as `finish_seconds`. `overhead_percent` divides it by
//! the process's CPU time (user + sys, getrusage) over the same window, handler time included.

use std::ffi::c_void;
use std::io;
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc;
use nix::sys::resource::{getrusage, UsageWho};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::time::{clock_gettime, ClockId};
use serde::Serialize;

/// Odd, so the ticks do not fall into lockstep with 30 fps (33.3 ms) work.
pub const DEFAULT_FREQUENCY_HZ: i32 = 99;

/// `ITIMER_PROF` advances on scheduler ticks; asking for more than 1 kHz buys nothing.
pub const MAX_FREQUENCY_HZ: i32 = 1000;

/// Libraries pprof says to skip: libgcc's unwinder is not safe to re-enter from a signal, and
/// some vdso builds carry wrong unwind tables. A tick that lands in them is dropped (and
/// counted in `samples_dropped`), so time spent inside libc (memcpy, for instance) is missing
/// from the graph; `samples_dropped` says how much.
const BLOCKLIST: [&str; 4] = ["libc", "libgcc", "pthread", "vdso"];

/// Frames that belong to the sampling itself (the unwinder, pprof's handler, ours, and the
/// signal trampoline); where they are left at the leaf end of a stack they are cut off.
const SIGNAL_FRAMES: [&str; 7] = [
    "backtrace::trace",
    "backtrace::backtrace::",
    "pprof::",
    "perf_signal_handler",
    "flamegraph::timed_handler",
    "__restore_rt",
    "sigreturn",
];

/// Only one sampler can run: pprof keeps a single global profiler and SIGPROF is per process.
static RUNNING: AtomicBool = AtomicBool::new(false);
/// Whether our handler forwards ticks to pprof and counts them; off while the report is built.
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// pprof's `SA_SIGINFO` handler, as an address (0: none).
static FORWARD: AtomicUsize = AtomicUsize::new(0);
static HANDLER_NS: AtomicU64 = AtomicU64::new(0);
static HANDLER_CALLS: AtomicU64 = AtomicU64::new(0);

type SigInfoHandler = extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void);

#[derive(Debug, thiserror::Error)]
pub enum FlamegraphError {
    #[error("sampling frequency {0} Hz is outside 1..={MAX_FREQUENCY_HZ}")]
    BadFrequency(i32),
    #[error("a sampler is already running in this process")]
    AlreadyRunning,
    #[error("starting the CPU sampler: {0}")]
    Start(#[source] pprof::Error),
    #[error("wrapping the SIGPROF handler: {0}")]
    Signal(#[source] nix::Error),
    #[error("pprof's SIGPROF handler is not installed")]
    NoHandler,
    #[error("reading the process CPU time: {0}")]
    Rusage(#[source] nix::Error),
    #[error("collecting the samples: {0}")]
    Report(#[source] pprof::Error),
    #[error("rendering the flamegraph: {0}")]
    Render(String),
    #[error("writing flamegraph {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What the sampler cost while the run was going.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SamplerOverhead {
    /// Time spent inside the SIGPROF handler, summed over all ticks (see the module doc).
    pub cpu_seconds: f64,
    /// Process CPU time (user + sys) while the sampler ran, handler time included.
    pub process_cpu_seconds: f64,
    /// `cpu_seconds` as a percentage of `process_cpu_seconds`.
    pub percent: f64,
    /// Ticks our handler timed (kept + dropped samples).
    pub handler_calls: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SamplerStats {
    /// Stacks in the flamegraph.
    pub samples: u64,
    /// Ticks that did not become a stack: in a blocklisted library, or while pprof's lock was
    /// held.
    pub samples_dropped: u64,
    pub frequency_hz: i32,
    pub overhead: SamplerOverhead,
    /// Symbolization and SVG writing after the run (not part of the run's CPU).
    pub finish_seconds: f64,
}

/// The sampler's part of the run report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlamegraphInfo {
    pub path: PathBuf,
    pub samples: u64,
    pub samples_dropped: u64,
    pub frequency_hz: i32,
    pub overhead_cpu_seconds: f64,
    pub overhead_percent: f64,
    pub finish_seconds: f64,
}

impl FlamegraphInfo {
    pub fn new(path: &Path, stats: &SamplerStats) -> Self {
        FlamegraphInfo {
            path: path.to_path_buf(),
            samples: stats.samples,
            samples_dropped: stats.samples_dropped,
            frequency_hz: stats.frequency_hz,
            overhead_cpu_seconds: stats.overhead.cpu_seconds,
            overhead_percent: stats.overhead.percent,
            finish_seconds: stats.finish_seconds,
        }
    }
}

/// A running CPU sampler. Dropping it without `finish` stops sampling and discards the samples.
pub struct Sampler {
    guard: Option<pprof::ProfilerGuard<'static>>,
    frequency_hz: i32,
    cpu_at_start: Duration,
}

impl Sampler {
    /// Starts sampling every thread of the process at `frequency_hz` ticks per CPU-second.
    pub fn start(frequency_hz: i32) -> Result<Self, FlamegraphError> {
        if !(1..=MAX_FREQUENCY_HZ).contains(&frequency_hz) {
            return Err(FlamegraphError::BadFrequency(frequency_hz));
        }
        if RUNNING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(FlamegraphError::AlreadyRunning);
        }
        match Self::start_exclusive(frequency_hz) {
            Ok(s) => Ok(s),
            Err(e) => {
                RUNNING.store(false, Ordering::Release);
                Err(e)
            }
        }
    }

    fn start_exclusive(frequency_hz: i32) -> Result<Self, FlamegraphError> {
        HANDLER_NS.store(0, Ordering::Relaxed);
        HANDLER_CALLS.store(0, Ordering::Relaxed);
        ACTIVE.store(true, Ordering::Release);
        let cpu_at_start = process_cpu()?;
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(frequency_hz)
            .blocklist(&BLOCKLIST)
            .build()
            .map_err(FlamegraphError::Start)?;
        // From here pprof's handler takes the ticks; put ours in front of it. A tick between
        // the two calls reaches pprof untimed (at most one or two per run).
        let ours = SigAction::new(
            SigHandler::SigAction(timed_handler),
            SaFlags::SA_SIGINFO | SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        // SAFETY: `timed_handler` only does async-signal-safe work (atomics, clock_gettime,
        // errno) before calling pprof's own handler, which is written for this context.
        let previous =
            unsafe { sigaction(Signal::SIGPROF, &ours) }.map_err(FlamegraphError::Signal)?;
        match previous.handler() {
            SigHandler::SigAction(f) => {
                FORWARD.store(f as usize, Ordering::Release);
            }
            _ => {
                // SAFETY: puts back exactly what was installed before our call.
                let _ = unsafe { sigaction(Signal::SIGPROF, &previous) };
                return Err(FlamegraphError::NoHandler);
            }
        }
        Ok(Sampler {
            guard: Some(guard),
            frequency_hz,
            cpu_at_start,
        })
    }

    /// Stops sampling, writes the flamegraph SVG to `svg_path` with `title`, and says what the
    /// sampling cost. A run too short to take a sample still gets an SVG (inferno's "no valid
    /// input" page) and `samples == 0`.
    pub fn finish(mut self, svg_path: &Path, title: &str) -> Result<SamplerStats, FlamegraphError> {
        // Freeze the window first: later ticks are neither forwarded nor counted.
        ACTIVE.store(false, Ordering::Release);
        let cpu_at_end = process_cpu()?;
        let handler_ns = HANDLER_NS.load(Ordering::Relaxed);
        let handler_calls = HANDLER_CALLS.load(Ordering::Relaxed);
        let finish_start = Instant::now();
        let guard = self.guard.take().ok_or(FlamegraphError::NoHandler)?;
        let report = guard.report().build().map_err(FlamegraphError::Report)?;
        drop(guard);

        let mut stacks: std::collections::HashMap<String, u64> = Default::default();
        let mut samples = 0u64;
        for (frames, &count) in &report.data {
            let Ok(count) = u64::try_from(count) else {
                continue;
            };
            samples += count;
            *stacks.entry(folded_stack(frames)).or_default() += count;
        }
        let mut lines: Vec<String> = stacks
            .into_iter()
            .map(|(stack, count)| format!("{stack} {count}"))
            .collect();
        lines.sort_unstable();

        let process_cpu_seconds = cpu_at_end.saturating_sub(self.cpu_at_start).as_secs_f64();
        let cpu_seconds = handler_ns as f64 / 1e9;
        let percent = if process_cpu_seconds > 0.0 {
            100.0 * cpu_seconds / process_cpu_seconds
        } else {
            0.0
        };
        let mut options = pprof::flamegraph::Options::default();
        options.title = title.to_owned();
        options.subtitle = Some(format!(
            "{samples} samples at {} Hz over {process_cpu_seconds:.2} CPU-s; \
             sampler overhead {percent:.2} % of CPU",
            self.frequency_hz
        ));
        options.count_name = "samples".to_owned();
        let mut svg = Vec::new();
        let rendered =
            pprof::flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), &mut svg);
        match rendered {
            Ok(()) => {}
            // inferno has written its "no valid input" page; that is the honest picture.
            Err(_) if samples == 0 => {}
            Err(e) => return Err(FlamegraphError::Render(e.to_string())),
        }
        std::fs::write(svg_path, &svg).map_err(|source| FlamegraphError::Write {
            path: svg_path.to_path_buf(),
            source,
        })?;

        Ok(SamplerStats {
            samples,
            samples_dropped: handler_calls.saturating_sub(samples),
            frequency_hz: self.frequency_hz,
            overhead: SamplerOverhead {
                cpu_seconds,
                process_cpu_seconds,
                percent,
                handler_calls,
            },
            finish_seconds: finish_start.elapsed().as_secs_f64(),
        })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        ACTIVE.store(false, Ordering::Release);
        // Dropping pprof's guard stops its timer and sets SIGPROF to ignored.
        drop(self.guard.take());
        FORWARD.store(0, Ordering::Release);
        RUNNING.store(false, Ordering::Release);
    }
}

/// Our SIGPROF handler: times pprof's. Async-signal-safe: atomics, clock_gettime, errno.
extern "C" fn timed_handler(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    if !ACTIVE.load(Ordering::Acquire) {
        return;
    }
    let forward = FORWARD.load(Ordering::Acquire);
    if forward == 0 {
        return;
    }
    let errno = Errno::last_raw();
    let t0 = monotonic_ns();
    // SAFETY: `forward` is the `SA_SIGINFO` handler sigaction reported, stored as an address;
    // it has exactly this signature.
    let f = unsafe { std::mem::transmute::<usize, SigInfoHandler>(forward) };
    f(sig, info, ctx);
    let dt = monotonic_ns().saturating_sub(t0);
    HANDLER_NS.fetch_add(dt, Ordering::Relaxed);
    HANDLER_CALLS.fetch_add(1, Ordering::Relaxed);
    Errno::set_raw(errno);
}

fn monotonic_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_MONOTONIC)
        .map(|t| Duration::from(t).as_nanos() as u64)
        .unwrap_or(0)
}

fn process_cpu() -> Result<Duration, FlamegraphError> {
    let u = getrusage(UsageWho::RUSAGE_SELF).map_err(FlamegraphError::Rusage)?;
    let tv = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(t.tv_sec().max(0) as u64)
            + Duration::from_micros(t.tv_usec().max(0) as u64)
    };
    Ok(tv(u.user_time()) + tv(u.system_time()))
}

/// One line of inferno's folded format, root first: thread name, then the frames (inlined
/// callees after their callers), without the sampling machinery at the leaf end.
fn folded_stack(frames: &pprof::Frames) -> String {
    // pprof stores the leaf first; each frame lists its inlined symbols innermost first.
    let names: Vec<Vec<String>> = frames
        .frames
        .iter()
        .map(|f| f.iter().map(|s| clean_name(&s.name())).collect())
        .collect();
    // pprof already drops its handler and the frame after it; whatever is left of the
    // sampling (unwinder, trampoline) is a run of frames at the leaf end.
    let machinery = names
        .iter()
        .take_while(|f| {
            f.iter()
                .any(|n| SIGNAL_FRAMES.iter().any(|m| n.contains(m)))
        })
        .count();
    let thread = if frames.thread_name.is_empty() {
        format!("thread-{}", frames.thread_id)
    } else {
        clean_name(&frames.thread_name)
    };
    let mut line = thread;
    for frame in names[machinery..].iter().rev() {
        for name in frame.iter().rev() {
            line.push(';');
            line.push_str(name);
        }
    }
    line
}

/// Folded stacks split on ';' and on the last space; Rust names carry a `::h<16 hex>` hash
/// that only splits identical functions apart.
fn clean_name(name: &str) -> String {
    let name = match name.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => {
            head
        }
        _ => name,
    };
    name.replace(';', ",").replace(' ', "\u{a0}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lose_hashes_and_separators() {
        assert_eq!(
            clean_name("pipeline::preview::run::h0123456789abcdef"),
            "pipeline::preview::run"
        );
        assert_eq!(
            clean_name("core::ptr::drop<[u8; 4]>"),
            "core::ptr::drop<[u8,\u{a0}4]>"
        );
        assert_eq!(clean_name("main::hello"), "main::hello");
    }

    #[inline(never)]
    fn burn(until: Instant) -> u64 {
        let mut x = 1u64;
        while Instant::now() < until {
            for _ in 0..10_000 {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
            }
            std::hint::black_box(x);
        }
        x
    }

    /// One test for everything that needs the process-wide sampler, so tests never race for it.
    #[test]
    fn samples_a_busy_thread_into_an_svg() {
        assert!(matches!(
            Sampler::start(0),
            Err(FlamegraphError::BadFrequency(0))
        ));
        let dir = std::env::temp_dir().join(format!("eyetrack-flame-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let svg = dir.join("f.svg");

        let sampler = Sampler::start(499).expect("sampler starts");
        assert!(matches!(
            Sampler::start(99),
            Err(FlamegraphError::AlreadyRunning)
        ));
        let worker = std::thread::Builder::new()
            .name("burner".into())
            .spawn(|| burn(Instant::now() + Duration::from_millis(600)))
            .expect("spawn");
        let _ = worker.join();
        let stats = sampler.finish(&svg, "unit test").expect("finish");

        let text = std::fs::read_to_string(&svg).expect("svg written");
        assert!(text.contains("</svg>"));
        assert!(stats.samples > 0, "{stats:?}");
        assert!(text.contains("burner"), "thread name is the root frame");
        assert!(text.contains("burn"), "the busy function is in the graph");
        assert!(stats.overhead.handler_calls >= stats.samples);
        assert!(stats.overhead.cpu_seconds > 0.0);
        assert!(stats.overhead.percent > 0.0 && stats.overhead.percent < 100.0);

        // Finished means free again.
        let again = Sampler::start(99).expect("restart");
        drop(again);
        std::fs::remove_dir_all(dir).ok();
    }
}
