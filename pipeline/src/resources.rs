//! Process-tree resource accounting: CPU time (user + sys) of this process and every
//! descendant, per thread as well as in total, and peak resident memory, read from /proc.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

/// One reading of the process tree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct TreeUsage {
    /// user + sys of this process, its live descendants, and the children it has reaped.
    pub cpu_seconds: f64,
    /// Resident set of this process plus its live descendants.
    pub rss_bytes: u64,
    /// This process's own peak resident set (VmHWM).
    pub self_peak_rss_bytes: u64,
    pub processes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    #[error("reading /proc for pid {pid}: {source}")]
    Proc {
        pid: i32,
        #[source]
        source: procfs::ProcError,
    },
}

fn pid_usage(pid: i32, tps: f64, page: u64) -> Result<(f64, u64, u64), ResourceError> {
    let proc_ =
        procfs::process::Process::new(pid).map_err(|source| ResourceError::Proc { pid, source })?;
    let stat = proc_
        .stat()
        .map_err(|source| ResourceError::Proc { pid, source })?;
    // cutime/cstime hold children that were waited for; live children are added separately.
    let ticks = stat.utime as f64
        + stat.stime as f64
        + stat.cutime.max(0) as f64
        + stat.cstime.max(0) as f64;
    let hwm_kb = proc_.status().ok().and_then(|s| s.vmhwm).unwrap_or(0);
    Ok((ticks / tps, stat.rss * page, hwm_kb * 1024))
}

/// Live children of `pid`, from every thread's `children` file (threads can fork too),
/// appended to `out`.
pub fn children_of(pid: i32, out: &mut Vec<i32>) {
    let task_dir = format!("/proc/{pid}/task");
    let Ok(tasks) = std::fs::read_dir(&task_dir) else {
        return;
    };
    for task in tasks.flatten() {
        let path = task.path().join("children");
        if let Ok(text) = std::fs::read_to_string(Path::new(&path)) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
}

/// Thread ids of this process now.
pub fn thread_ids() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Names the threads of this process that are not in `before` (e.g. the worker threads a C
/// library just started, which would otherwise carry their creator's name), so the per-thread
/// CPU table can tell them apart. Best effort: a thread another stage started in the same
/// moment gets the name too, and a name is cut to the kernel's 15 bytes.
pub fn name_new_threads(before: &[i32], name: &str) {
    for tid in thread_ids() {
        if !before.contains(&tid) {
            let _ = std::fs::write(format!("/proc/self/task/{tid}/comm"), name);
        }
    }
}

/// Reads CPU and memory of this process and all its descendants.
pub fn sample_tree() -> Result<TreeUsage, ResourceError> {
    sample_tree_of(std::process::id() as i32)
}

/// Reads CPU and memory of process `me` and all its descendants (e.g. a child being watched).
pub fn sample_tree_of(me: i32) -> Result<TreeUsage, ResourceError> {
    let tps = procfs::ticks_per_second() as f64;
    let page = procfs::page_size();
    let (cpu, rss, hwm) = pid_usage(me, tps, page)?;
    let mut usage = TreeUsage {
        cpu_seconds: cpu,
        rss_bytes: rss,
        self_peak_rss_bytes: hwm,
        processes: 1,
    };
    let mut stack = Vec::new();
    children_of(me, &mut stack);
    while let Some(pid) = stack.pop() {
        // A child that exits between listing and reading is simply gone: skip it.
        if let Ok((cpu, rss, _)) = pid_usage(pid, tps, page) {
            usage.cpu_seconds += cpu;
            usage.rss_bytes += rss;
            usage.processes += 1;
            children_of(pid, &mut stack);
        }
    }
    Ok(usage)
}

/// CPU time of the threads of one name in one process of the tree, while monitored: where the
/// CPU-seconds of a run went (decoder threads, x264's threads inside ffmpeg, the pipe, ...).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ThreadCpu {
    /// The process's name (`comm`): `eyetrack`, `ffmpeg`, ...
    pub process: String,
    /// The thread's name (`comm`). Threads a library starts inherit their creator's name
    /// unless renamed (see `decode::libav`), and a process's first thread is `(main)`, so a
    /// pool of worker threads is one row.
    pub thread: String,
    /// Threads of this name seen.
    pub threads: usize,
    pub cpu_seconds: f64,
}

/// What a [`ResourceMonitor`] saw between start and stop.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ResourceSummary {
    /// CPU-seconds the process tree used while monitored.
    pub cpu_seconds: f64,
    /// Highest tree RSS sampled, or this process's own peak if that is higher.
    pub peak_rss_bytes: u64,
    pub samples: u64,
    /// Most processes seen at once (1 = no children).
    pub max_processes: usize,
    /// Per process and thread name, most CPU first. Threads are read every half second
    /// (and at [`ResourceMonitor::mark_threads`]), so what a thread used after its last reading
    /// before it ended is in `cpu_seconds` but in no row here.
    pub threads: Vec<ThreadCpu>,
}

/// One thread of the tree as last read.
#[derive(Debug)]
struct TaskCpu {
    process: String,
    thread: String,
    /// Ticks when first seen if it already ran when monitoring started, else 0.
    base: u64,
    last: u64,
}

/// Per-thread CPU of the tree, keyed by (pid, tid): tids are not reused while we look, and a
/// pid's threads come and go (libav and x264 start theirs on demand).
#[derive(Debug, Default)]
struct ThreadTable {
    tasks: HashMap<(i32, i32), TaskCpu>,
    started: bool,
}

impl ThreadTable {
    /// Reads every thread of `root` and its descendants.
    fn sample(&mut self, root: i32) {
        let mut stack = vec![root];
        while let Some(pid) = stack.pop() {
            children_of(pid, &mut stack);
            let Ok(p) = procfs::process::Process::new(pid) else {
                continue;
            };
            let Ok(process) = p.stat().map(|s| s.comm) else {
                continue;
            };
            let Ok(tasks) = p.tasks() else { continue };
            for task in tasks.flatten() {
                let Ok(st) = task.stat() else { continue };
                let ticks = st.utime + st.stime;
                let thread = if task.tid == pid {
                    "(main)".to_owned()
                } else {
                    st.comm
                };
                let started = self.started;
                let e = self
                    .tasks
                    .entry((pid, task.tid))
                    .or_insert_with(|| TaskCpu {
                        process: process.clone(),
                        thread: thread.clone(),
                        base: if started { 0 } else { ticks },
                        last: ticks,
                    });
                // A thread may rename itself after it started (ours do at once).
                e.thread = thread;
                e.last = e.last.max(ticks);
            }
        }
        self.started = true;
    }

    fn summary(&self) -> Vec<ThreadCpu> {
        let tps = procfs::ticks_per_second() as f64;
        let mut groups: HashMap<(&str, &str), (usize, u64)> = HashMap::new();
        for t in self.tasks.values() {
            let g = groups.entry((&t.process, &t.thread)).or_default();
            g.0 += 1;
            g.1 += t.last.saturating_sub(t.base);
        }
        let mut rows: Vec<ThreadCpu> = groups
            .into_iter()
            .map(|((process, thread), (threads, ticks))| ThreadCpu {
                process: process.to_owned(),
                thread: thread.to_owned(),
                threads,
                cpu_seconds: ticks as f64 / tps,
            })
            .collect();
        rows.sort_by(|a, b| {
            b.cpu_seconds
                .total_cmp(&a.cpu_seconds)
                .then_with(|| (&a.process, &a.thread).cmp(&(&b.process, &b.thread)))
        });
        rows
    }
}

/// How often the monitor reads every thread (the tree totals are read every interval).
const THREAD_SAMPLE_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
struct Shared {
    start_cpu: f64,
    latest: TreeUsage,
    peak_rss: u64,
    samples: u64,
    max_processes: usize,
    threads: ThreadTable,
}

/// Samples the tree on a background thread so peak memory of short-lived children is seen.
#[derive(Debug)]
pub struct ResourceMonitor {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ResourceMonitor {
    /// Starts sampling every `interval`. If /proc cannot be read, the monitor still runs and
    /// reports zeros: resource accounting must never stop the pipeline.
    pub fn start(interval: Duration) -> Self {
        let first = sample_tree().unwrap_or_default();
        let me = std::process::id() as i32;
        let mut threads = ThreadTable::default();
        threads.sample(me);
        let shared = Arc::new(Mutex::new(Shared {
            start_cpu: first.cpu_seconds,
            latest: first,
            peak_rss: first.rss_bytes,
            samples: 1,
            max_processes: first.processes,
            threads,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("resources".into())
                .spawn(move || {
                    let mut threads_read = std::time::Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(interval);
                        if let Ok(u) = sample_tree() {
                            if let Ok(mut s) = shared.lock() {
                                Self::absorb(&mut s, u);
                                if threads_read.elapsed() >= THREAD_SAMPLE_EVERY {
                                    threads_read = std::time::Instant::now();
                                    s.threads.sample(me);
                                }
                            }
                        }
                    }
                })
                .ok()
        };
        ResourceMonitor {
            shared,
            stop,
            thread,
        }
    }

    fn absorb(s: &mut Shared, u: TreeUsage) {
        s.latest = u;
        s.peak_rss = s.peak_rss.max(u.rss_bytes);
        s.samples += 1;
        s.max_processes = s.max_processes.max(u.processes);
    }

    /// CPU-seconds so far and the current tree RSS, for live status lines.
    pub fn current(&self) -> (f64, u64) {
        self.shared
            .lock()
            .map(|s| (s.latest.cpu_seconds - s.start_cpu, s.latest.rss_bytes))
            .unwrap_or((0.0, 0))
    }

    /// Reads every thread now: call it while the stages still run (before stopping them), so
    /// their last second is attributed before they end.
    pub fn mark_threads(&self) {
        if let Ok(mut s) = self.shared.lock() {
            s.threads.sample(std::process::id() as i32);
        }
    }

    /// Takes a final sample and stops the thread.
    pub fn stop(mut self) -> ResourceSummary {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        let last = sample_tree().ok();
        let Ok(mut s) = self.shared.lock() else {
            return ResourceSummary::default();
        };
        if let Some(u) = last {
            Self::absorb(&mut s, u);
        }
        s.threads.sample(std::process::id() as i32);
        ResourceSummary {
            cpu_seconds: (s.latest.cpu_seconds - s.start_cpu).max(0.0),
            peak_rss_bytes: s.peak_rss.max(s.latest.self_peak_rss_bytes),
            samples: s.samples,
            max_processes: s.max_processes,
            threads: s.threads.summary(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_busy_cpu_and_memory() {
        let m = ResourceMonitor::start(Duration::from_millis(20));
        let t0 = std::time::Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let s = m.stop();
        assert!(s.cpu_seconds > 0.05, "{s:?}");
        assert!(s.peak_rss_bytes > 1 << 20, "{s:?}");
        assert!(s.samples >= 2);
    }

    #[test]
    fn attributes_cpu_to_named_threads() {
        let m = ResourceMonitor::start(Duration::from_millis(20));
        let busy = std::thread::Builder::new()
            .name("busy-test".into())
            .spawn(|| {
                let t0 = std::time::Instant::now();
                let mut x = 0u64;
                while t0.elapsed() < Duration::from_millis(400) {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                }
                std::hint::black_box(x);
            })
            .unwrap();
        // Read while it runs: its final ticks after the last reading would be unattributed.
        std::thread::sleep(Duration::from_millis(300));
        m.mark_threads();
        busy.join().unwrap();
        let s = m.stop();
        let row = s
            .threads
            .iter()
            .find(|t| t.thread == "busy-test")
            .unwrap_or_else(|| panic!("no busy-test row in {:?}", s.threads));
        assert_eq!(row.threads, 1);
        assert!(row.cpu_seconds > 0.0, "{row:?}");
        let attributed: f64 = s.threads.iter().map(|t| t.cpu_seconds).sum();
        assert!(
            attributed <= s.cpu_seconds + 0.02,
            "{attributed} > {}",
            s.cpu_seconds
        );
    }

    #[test]
    fn sees_child_processes() {
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 5",
            ])
            .spawn()
            .expect("sh is on every Debian machine");
        std::thread::sleep(Duration::from_millis(400));
        let u = sample_tree().unwrap();
        assert!(u.processes >= 2, "{u:?}");
        let _ = child.kill();
        let _ = child.wait();
    }
}
