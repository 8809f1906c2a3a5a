//! The scene microphone's recording: 16-bit PCM WAV (`hound`) plus a timing CSV, kept readable
//! if the process dies: at every sync point the RIFF and data chunk sizes are rewritten for
//! what has been written so far and the file is fsynced, so a killed run leaves a WAV whose
//! header covers everything up to the last sync (players read the rest as trailing bytes).
//!
//! The WAV follows the device clock: a gap in the stream's device times (lost packets, a
//! reconnect) longer than half a block is filled with silence, up to [`MAX_SILENCE_S`], so a
//! sample's position in the file times it from the first sample; the timing CSV has each
//! block's own device time for exact alignment.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::csv_files::{
    stream_csv, LoggerAudioRow, RecordTime, Secs6, Secs9, LOGGER_AUDIO_TIMING_HEADER,
};
use super::layout::LOGGER_MODULE;
use crate::streams::{AudioBlock, AudioMeta};
use crate::time::MonoNanos;

/// Longest stretch of silence a gap is filled with; a longer outage leaves the file's time
/// behind the device's (the timing CSV still has every block's device time).
pub const MAX_SILENCE_S: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Wav { path: PathBuf, source: hound::Error },
    #[error("audio block of {got_rate} Hz x {got_ch} after {rate} Hz x {ch} in one file")]
    FormatChanged {
        got_rate: u32,
        got_ch: u16,
        rate: u32,
        ch: u16,
    },
}

/// One row of the audio timing CSV.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct AudioRow {
    pub block_index: u64,
    /// Index (in sample frames) of the block's first sample in the WAV.
    pub first_sample: u64,
    pub samples: u64,
    /// Device time of the block's first sample.
    pub device_time_ns: i64,
    pub received_mono_ns: u64,
    pub write_mono_ns: u64,
    /// Silent sample frames written before this block to bridge a gap in device time.
    pub silence_before: u64,
}

/// What an audio recording ended with.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AudioSummary {
    pub file: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub blocks: u64,
    /// Sample frames in the file, silence included.
    pub samples: u64,
    pub silence_samples: u64,
    pub syncs: u64,
    pub end: String,
}

pub struct WavRecorder {
    wav_path: PathBuf,
    timing_path: PathBuf,
    wav: Option<hound::WavWriter<BufWriter<File>>>,
    /// A second handle on the WAV's descriptor, to fsync what hound flushed.
    wav_file: Option<File>,
    csv: csv::Writer<BufWriter<File>>,
    csv_file: File,
    rate: u32,
    channels: u16,
    /// Device time of the first sample.
    start_ns: Option<i64>,
    written: u64,
    since_sync: u64,
    /// Sync every this many sample frames (0: only at the end).
    sync_every: u64,
    sync_seconds: u32,
    /// Logger layout: the trial its timing rows name; `None` writes eyetrack's columns.
    logger_trial: Option<u32>,
    /// Last `record_time_mono` written: the column never goes back.
    last_mono: u64,
    summary: AudioSummary,
}

impl WavRecorder {
    /// Creates the timing CSV now; the WAV is created with the first block (its rate and
    /// channel count come from the stream). `sync_seconds`: audio between sync points.
    pub fn create(wav: &Path, timing: &Path, sync_seconds: u32) -> Result<Self, WavError> {
        Self::create_for(wav, timing, sync_seconds, None)
    }

    /// As [`WavRecorder::create`]; with `logger_trial` the timing CSV has the logger layout's
    /// AUDIO_TIMING columns for that trial.
    pub fn create_for(
        wav: &Path,
        timing: &Path,
        sync_seconds: u32,
        logger_trial: Option<u32>,
    ) -> Result<Self, WavError> {
        let header = logger_trial.map(|_| LOGGER_AUDIO_TIMING_HEADER);
        let (csv, csv_file) = stream_csv(timing, header).map_err(|source| WavError::Io {
            path: timing.to_owned(),
            source,
        })?;
        Ok(WavRecorder {
            wav_path: wav.to_owned(),
            timing_path: timing.to_owned(),
            wav: None,
            wav_file: None,
            csv,
            csv_file,
            rate: 0,
            channels: 0,
            start_ns: None,
            written: 0,
            since_sync: 0,
            sync_every: 0,
            sync_seconds,
            logger_trial,
            last_mono: 0,
            summary: AudioSummary {
                file: crate::record::encoder::ffmpeg::file_name(wav),
                ..AudioSummary::default()
            },
        })
    }

    fn wav_err(&self, source: hound::Error) -> WavError {
        WavError::Wav {
            path: self.wav_path.clone(),
            source,
        }
    }

    fn open(&mut self, rate: u32, channels: u16) -> Result<(), WavError> {
        let io = |source| WavError::Io {
            path: self.wav_path.clone(),
            source,
        };
        let file = File::create(&self.wav_path).map_err(io)?;
        let sync_handle = file.try_clone().map_err(io)?;
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let w = hound::WavWriter::new(BufWriter::new(file), spec).map_err(|e| self.wav_err(e))?;
        self.wav = Some(w);
        self.wav_file = Some(sync_handle);
        self.rate = rate;
        self.channels = channels;
        self.sync_every = u64::from(rate) * u64::from(self.sync_seconds);
        self.summary.sample_rate = rate;
        self.summary.channels = channels;
        // A valid (empty) file from the start.
        self.sync()
    }

    /// Appends one block (and the silence before it, if its device time jumped ahead).
    pub fn write(&mut self, block: &AudioBlock, meta: AudioMeta) -> Result<(), WavError> {
        self.write_at(block, meta, RecordTime::UNSET)
    }

    /// As [`WavRecorder::write`]; `at` is when the host took the block in (the logger layout's
    /// record_time columns).
    pub fn write_at(
        &mut self,
        block: &AudioBlock,
        meta: AudioMeta,
        at: RecordTime,
    ) -> Result<(), WavError> {
        let ch = block.channels.max(1);
        if self.wav.is_none() {
            self.open(block.sample_rate.max(1), ch)?;
        } else if block.sample_rate != self.rate || ch != self.channels {
            return Err(WavError::FormatChanged {
                got_rate: block.sample_rate,
                got_ch: ch,
                rate: self.rate,
                ch: self.channels,
            });
        }
        let rate = i128::from(self.rate);
        let start = *self.start_ns.get_or_insert(meta.device_time.0);
        // Where this block belongs in the file by device time, in sample frames.
        let due = (i128::from(meta.device_time.0 - start) * rate / 1_000_000_000).max(0);
        let gap = due - i128::from(self.written);
        let half_block = (block.frames() / 2) as i128;
        let silence = if gap > half_block {
            gap.min(rate * i128::from(MAX_SILENCE_S)) as u64
        } else {
            0
        };
        let first_sample = self.written + silence;
        {
            let Some(w) = self.wav.as_mut() else {
                return Ok(());
            };
            // Sample by sample into the BufWriter: no buffer per block.
            for _ in 0..silence * u64::from(ch) {
                w.write_sample(0i16).map_err(|e| WavError::Wav {
                    path: self.wav_path.clone(),
                    source: e,
                })?;
            }
            for &s in &block.samples {
                w.write_sample(s).map_err(|e| WavError::Wav {
                    path: self.wav_path.clone(),
                    source: e,
                })?;
            }
        }
        let frames = block.frames() as u64;
        self.written = first_sample + frames;
        self.since_sync += silence + frames;
        let written = match self.logger_trial {
            None => self.csv.serialize(AudioRow {
                block_index: self.summary.blocks,
                first_sample,
                samples: frames,
                device_time_ns: meta.device_time.0,
                received_mono_ns: meta.received_mono.0,
                write_mono_ns: MonoNanos::now().0,
                silence_before: silence,
            }),
            Some(trial) => {
                self.last_mono = self.last_mono.max(at.mono.0);
                self.csv.serialize(LoggerAudioRow {
                    module: LOGGER_MODULE,
                    trial,
                    block_index: self.summary.blocks,
                    first_sample,
                    samples: frames,
                    timestamp: Secs6(meta.device_time.0),
                    silence_before: silence,
                    record_time_unix: Secs6(at.unix.0),
                    record_time_mono: Secs9(self.last_mono),
                })
            }
        };
        written.map_err(|e| WavError::Io {
            path: self.timing_path.clone(),
            source: std::io::Error::other(e),
        })?;
        self.summary.blocks += 1;
        self.summary.samples = self.written;
        self.summary.silence_samples += silence;
        if self.sync_every > 0 && self.since_sync >= self.sync_every {
            self.sync()?;
        }
        Ok(())
    }

    /// Makes everything so far durable: WAV sizes updated (hound's flush), CSV flushed, both
    /// fsynced.
    pub fn sync(&mut self) -> Result<(), WavError> {
        self.since_sync = 0;
        if let Some(w) = self.wav.as_mut() {
            w.flush().map_err(|e| WavError::Wav {
                path: self.wav_path.clone(),
                source: e,
            })?;
        }
        if let Some(f) = &self.wav_file {
            f.sync_data().map_err(|source| WavError::Io {
                path: self.wav_path.clone(),
                source,
            })?;
        }
        let io = |source| WavError::Io {
            path: self.timing_path.clone(),
            source,
        };
        self.csv.flush().map_err(io)?;
        self.csv_file.sync_data().map_err(io)?;
        self.summary.syncs += 1;
        Ok(())
    }

    /// Sample frames written (silence included).
    pub fn samples(&self) -> u64 {
        self.written
    }

    /// Finalizes the WAV and fsyncs both files.
    pub fn finish(mut self) -> AudioSummary {
        let mut end = "finished".to_string();
        if let Err(e) = self.sync() {
            end = format!("error: {e}");
        }
        if let Some(w) = self.wav.take() {
            if let Err(e) = w.finalize() {
                end = format!("error: {}", self.wav_err(e));
            }
        }
        if let Some(f) = &self.wav_file {
            let _ = f.sync_data();
        }
        if self.summary.blocks == 0 {
            end = "no audio arrived".into();
        }
        self.summary.end = end;
        self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::UnixNanos;

    fn block(n: usize, v: i16) -> AudioBlock {
        AudioBlock {
            sample_rate: 8000,
            channels: 1,
            samples: vec![v; n],
        }
    }

    fn meta(t_ns: i64) -> AudioMeta {
        AudioMeta {
            device_time: UnixNanos(1_700_000_000_000_000_000 + t_ns),
            received_mono: MonoNanos(1),
        }
    }

    /// A run killed after a sync point leaves a WAV that reads back with everything up to it,
    /// and a gap in device time becomes silence.
    #[test]
    fn a_killed_recording_reads_back_up_to_its_last_sync() {
        let dir = tempfile::tempdir().unwrap();
        let (wav, csv) = (dir.path().join("a.wav"), dir.path().join("a.csv"));
        let mut w = WavRecorder::create(&wav, &csv, 1).unwrap();
        for k in 0..8 {
            w.write(&block(1024, 100), meta(k * 128_000_000)).unwrap();
        }
        // one block lost: 128 ms of silence, then the block where it belongs
        w.write(&block(1024, 200), meta(9 * 128_000_000)).unwrap();
        w.sync().unwrap();
        w.write(&block(1024, 300), meta(10 * 128_000_000)).unwrap();
        // SIGKILL: no finalize, no drop (hound would finalize in its destructor)
        std::mem::forget(w);
        let r = hound::WavReader::open(&wav).unwrap();
        assert_eq!(r.spec().sample_rate, 8000);
        assert_eq!(r.len(), 10 * 1024, "the header covers what was synced");
        let s: Vec<i16> = r.into_samples().map(Result::unwrap).collect();
        assert_eq!(s[0], 100);
        assert_eq!(s[8 * 1024], 0, "silence for the lost block");
        assert_eq!(s[9 * 1024], 200);
        let rows = std::fs::read_to_string(&csv).unwrap();
        assert_eq!(rows.lines().count(), 1 + 9, "header + synced rows");
        assert!(rows.lines().nth(9).unwrap().starts_with("8,9216,1024,"));
    }

    #[test]
    fn finish_closes_a_complete_file() {
        let dir = tempfile::tempdir().unwrap();
        let (wav, csv) = (dir.path().join("a.wav"), dir.path().join("a.csv"));
        let mut w = WavRecorder::create(&wav, &csv, 0).unwrap();
        for k in 0..3 {
            w.write(&block(1024, 1), meta(k * 128_000_000)).unwrap();
        }
        assert!(w
            .write(
                &AudioBlock {
                    sample_rate: 16000,
                    ..block(10, 0)
                },
                meta(0)
            )
            .is_err());
        let s = w.finish();
        assert_eq!((s.blocks, s.samples, s.end.as_str()), (3, 3072, "finished"));
        assert_eq!(hound::WavReader::open(&wav).unwrap().len(), 3072);
    }
}
