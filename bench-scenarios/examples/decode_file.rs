//! Decodes an Annex B H.264 file with one backend and prints the decoder's counters: a quick
//! check of a recorded stream, and the driver for counting the decoders' own allocations under
//! valgrind (`decode_file <libav|openh264> <file> <passes>`, compare 1 and 2 passes).

use anyhow::Context;
use pipeline::decode::{self, annexb::split_access_units, DecoderKind, DecoderOptions};
use pipeline::frame::FramePool;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: decode_file <libav|openh264> <file.h264> [passes]";
    let kind: DecoderKind = args.next().context(usage)?.parse()?;
    let path = args.next().context(usage)?;
    let passes: usize = args.next().map_or(Ok(1), |s| s.parse()).context(usage)?;
    let bytes = std::fs::read(&path).with_context(|| format!("reading {path}"))?;
    let aus: Vec<&[u8]> = split_access_units(&bytes).collect();
    let mut dec = decode::open::<usize>(kind, &DecoderOptions::default())?;
    let mut pool = FramePool::new(3);
    let mut out = Vec::with_capacity(4);
    let mut errors = 0u64;
    for _ in 0..passes {
        for (i, au) in aus.iter().enumerate() {
            if let Err(e) = dec.decode(au, i, &mut pool, &mut out) {
                errors += 1;
                eprintln!("{e}");
            }
            out.clear();
        }
    }
    dec.flush(&mut pool, &mut out)?;
    println!(
        "{kind}: {} access units, {errors} errors, {:?}",
        aus.len() * passes,
        dec.stats()
    );
    Ok(())
}
