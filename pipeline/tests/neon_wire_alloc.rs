//! The Neon wire layer's per-packet receive path allocates nothing once warm: RTP parse, sequence
//! unwrap, reorder buffer, H.264 depacketizer, SR clock, gaze/IMU/event decode, RTCP walk.
//! Also holds an ignored throughput run that prints figures (never a pass/fail criterion).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Instant;

use pipeline::neon::clock::{ClockRate, SrClock, StampQueue};
use pipeline::neon::events::EyeEvent;
use pipeline::neon::gaze::{NeonGaze, Point};
use pipeline::neon::h264::{Depacketizer, RtpPacketizer, START_CODE};
use pipeline::neon::imu::ImuPacket;
use pipeline::neon::rtcp::{self, NtpTimestamp, SenderInfo};
use pipeline::neon::rtp::{ReorderBuffer, RtpHeader, RtpPacket, SeqUnwrapper};
use pipeline::sensors::ImuSample;
use pipeline::time::UnixNanos;

/// Counts allocations of the current thread only, so other tests running in parallel in this
/// binary do not disturb the count.
struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(|c| c.get())
}

/// Deterministic NAL body without start-code emulation (bytes 1..=255 only).
fn nal(header: u8, len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    std::iter::once(header)
        .chain((1..len).map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 255 + 1) as u8
        }))
        .collect()
}

fn annex_b(nals: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for n in nals {
        v.extend_from_slice(&START_CODE);
        v.extend_from_slice(n);
    }
    v
}

/// A world-camera-like stream: 30 fps, IDR every 30 frames (~120 KB), P frames ~20 KB, packetized
/// like the phone (1200-byte payloads). Returns RTP packets.
fn world_stream(gops: usize) -> Vec<Vec<u8>> {
    let mut pk = RtpPacketizer::new(1200, 96, 0x5eed, 65_000);
    let mut packets = Vec::new();
    for f in 0..gops * 30 {
        let au = if f % 30 == 0 {
            annex_b(&[
                nal(0x67, 12, 1),
                nal(0x68, 4, 2),
                nal(0x65, 120_000 + f % 7, f as u32),
            ])
        } else {
            annex_b(&[nal(0x41, 20_000 + (f % 13) * 100, f as u32)])
        };
        pk.packetize(&au, (f as u32).wrapping_mul(3000), |p| {
            packets.push(p.to_vec())
        });
    }
    packets
}

struct Receiver {
    seq: SeqUnwrapper,
    reorder: ReorderBuffer,
    depack: Depacketizer,
    clock: SrClock,
    bytes_out: u64,
    aus: u64,
}

impl Receiver {
    fn new() -> Self {
        let mut clock = SrClock::new(ClockRate::VIDEO);
        clock.on_sender_report(&SenderInfo {
            ssrc: 0x5eed,
            ntp: NtpTimestamp::from_unix_nanos(UnixNanos(1_760_676_790_000_000_000)),
            rtp_timestamp: 0,
            packet_count: 0,
            octet_count: 0,
        });
        Receiver {
            seq: SeqUnwrapper::new(),
            reorder: ReorderBuffer::new(8, 1500),
            depack: Depacketizer::new(),
            clock,
            bytes_out: 0,
            aus: 0,
        }
    }

    fn feed(&mut self, datagram: &[u8]) {
        let Ok(p) = RtpPacket::parse(datagram) else {
            return;
        };
        let (ext, _) = self.seq.push(p.sequence);
        self.reorder.push(ext, datagram);
        while let Some((_, bytes)) = self.reorder.pop() {
            let Ok(p) = RtpPacket::parse(bytes) else {
                continue;
            };
            let _ = self.depack.push(&p);
            while let Some(au) = self.depack.pull() {
                let t = self.clock.on_packet(0x5eed, au.rtp_timestamp);
                assert!(t.time.is_some());
                self.bytes_out += au.data.len() as u64;
                self.aus += 1;
            }
        }
    }
}

#[test]
fn video_receive_path_allocates_nothing_once_warm() {
    let packets = world_stream(6);
    let mut rx = Receiver::new();
    let warm = packets.len() / 2;
    for p in &packets[..warm] {
        rx.feed(p);
    }
    let before = allocs();
    for p in &packets[warm..] {
        rx.feed(p);
    }
    let during = allocs() - before;
    assert_eq!(rx.aus, 180);
    assert_eq!(during, 0, "{during} allocations in the steady state");
}

#[test]
fn sensor_payload_paths_allocate_nothing_once_warm() {
    let mut gaze = Vec::new();
    NeonGaze {
        binocular: Some(Point { x: 800.0, y: 600.0 }),
        worn: 255,
        ..Default::default()
    }
    .encode(&mut gaze)
    .unwrap();
    let mut imu = Vec::new();
    ImuPacket::from_sample(&ImuSample {
        time: UnixNanos(1_760_676_790_103_992_534),
        gyro_dps: [1.0, 2.0, 3.0],
        accel_g: [0.0, 0.0, 1.0],
        quaternion: [1.0, 0.0, 0.0, 0.0],
    })
    .encode_payload(&mut imu);
    let mut blink = Vec::new();
    EyeEvent::Blink {
        start_ns: 1,
        end_ns: 2,
    }
    .encode(&mut blink);
    let mut sr = Vec::new();
    rtcp::write_sender_report(
        &SenderInfo {
            ssrc: 9,
            ntp: NtpTimestamp(1 << 63),
            ..Default::default()
        },
        &[],
        &mut sr,
    );
    let mut datagrams = Vec::new();
    for (i, payload) in [&gaze, &imu, &blink].iter().enumerate() {
        let mut d = Vec::new();
        RtpHeader {
            marker: true,
            payload_type: 99 + i as u8,
            sequence: 1,
            timestamp: 100,
            ssrc: 9,
        }
        .write(payload, &mut d);
        datagrams.push(d);
    }
    let mut queue = StampQueue::new(ClockRate::VIDEO, 256);
    let run = |n: u32, queue: &mut StampQueue<(f32, f32)>| {
        let mut sum = 0.0f32;
        for k in 0..n {
            let s = rtcp::summarize(&sr).unwrap();
            if k == 0 {
                queue.on_sender_report(&s.sender_report.unwrap());
            }
            let p = RtpPacket::parse(&datagrams[0]).unwrap();
            let g = NeonGaze::decode(p.payload).unwrap();
            let b = g.binocular.unwrap();
            queue.push(p.ssrc, p.timestamp.wrapping_add(k * 450), (b.x, b.y));
            while let Some(s) = queue.pop() {
                sum += s.item.0;
            }
            let p = RtpPacket::parse(&datagrams[1]).unwrap();
            sum += ImuPacket::decode_payload(p.payload)
                .unwrap()
                .to_sample()
                .accel_g[2];
            let p = RtpPacket::parse(&datagrams[2]).unwrap();
            if let Ok(EyeEvent::Blink { .. }) = EyeEvent::decode(p.payload) {
                sum += 1.0;
            }
        }
        sum
    };
    run(10, &mut queue);
    let before = allocs();
    let sum = run(1000, &mut queue);
    let during = allocs() - before;
    assert_eq!(sum, 1000.0 * (800.0 + 1.0 + 1.0));
    assert_eq!(during, 0, "{during} allocations in the steady state");
}

/// Prints throughput figures. Run:
/// `cargo test --release -p pipeline --test neon_wire_alloc -- --ignored --nocapture`
#[test]
#[ignore = "prints timings; not a pass/fail test"]
fn throughput() {
    let packets = world_stream(20);
    let bytes: usize = packets.iter().map(|p| p.len()).sum();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let mut rx = Receiver::new();
        let t = Instant::now();
        for p in &packets {
            rx.feed(p);
        }
        best = best.min(t.elapsed().as_secs_f64());
        assert_eq!(rx.aus, 600);
    }
    println!(
        "video receive path (parse+unwrap+reorder+depacketize+clock): {} packets, {:.1} MB, \
         {:.1} ms = {:.0} MB/s, {:.0} ns/packet, {:.1} us/frame",
        packets.len(),
        bytes as f64 / 1e6,
        best * 1e3,
        bytes as f64 / best / 1e6,
        best / packets.len() as f64 * 1e9,
        best / 600.0 * 1e6
    );

    let au = annex_b(&[nal(0x41, 20_000, 3)]);
    let mut pk = RtpPacketizer::new(1200, 96, 1, 0);
    let n = 2000;
    let t = Instant::now();
    let mut count = 0;
    for i in 0..n {
        pk.packetize(&au, i, |p| count += p.len());
    }
    let el = t.elapsed().as_secs_f64();
    println!(
        "packetize 20 KB frames: {:.0} MB/s, {:.1} us/frame",
        count as f64 / el / 1e6,
        el / n as f64 * 1e6
    );

    let mut gaze = Vec::new();
    NeonGaze {
        binocular: Some(Point { x: 1.0, y: 2.0 }),
        worn: 255,
        ..Default::default()
    }
    .encode(&mut gaze)
    .unwrap();
    let mut imu = Vec::new();
    ImuPacket::from_sample(&ImuSample {
        time: UnixNanos(1_760_676_790_103_992_534),
        gyro_dps: [1.5, -2.0, 3.0],
        accel_g: [0.01, -0.2, 1.0],
        quaternion: [0.9, 0.1, 0.2, 0.3],
    })
    .encode_payload(&mut imu);
    let n = 1_000_000;
    let t = Instant::now();
    let mut s = 0.0f32;
    for _ in 0..n {
        s += NeonGaze::decode(std::hint::black_box(&gaze)).map_or(0.0, |g| g.worn as f32);
    }
    let g_ns = t.elapsed().as_secs_f64() / n as f64 * 1e9;
    let t = Instant::now();
    for _ in 0..n {
        s += ImuPacket::decode_payload(std::hint::black_box(&imu))
            .map_or(0.0, |p| p.to_sample().accel_g[2]);
    }
    let i_ns = t.elapsed().as_secs_f64() / n as f64 * 1e9;
    println!(
        "gaze decode (9 B): {g_ns:.1} ns; IMU protobuf decode ({} B): {i_ns:.1} ns ({s})",
        imu.len()
    );
}
