//! IMU RTP payloads (protocol doc 6.2): one protobuf-3 `imuproto.ImuPacket` per packet, decoded
//! and encoded with `prost`, converted to the pipeline's [`ImuSample`].
//!
//! The messages are declared by hand with prost's derive (no protoc, no build script), matching
//! `imu.proto` of a real recording (field numbers and types; the doc calls message 4 `RotVecData`,
//! the recording's file `QuaternionData`: same wire format). Also reads the older native
//! recording stream `extimu ps<N>.raw`: repeated `[u16 LE length][ImuPacket]` (doc 9.1).

use prost::Message;
use thiserror::Error;

use crate::sensors::ImuSample;
use crate::time::UnixNanos;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ImuError {
    #[error("IMU protobuf of {len} bytes: {source}")]
    Decode {
        len: usize,
        #[source]
        source: prost::DecodeError,
    },
    #[error(
        "IMU record at offset {offset}: length {declared} overruns the {available} bytes left"
    )]
    RecordOverrun {
        offset: usize,
        declared: usize,
        available: usize,
    },
}

/// Acceleration in g (doc 6.2: the docs' sample reads z = 1.007 at rest).
#[derive(Clone, Copy, PartialEq, Message)]
pub struct AccelData {
    #[prost(float, tag = "1")]
    pub x: f32,
    #[prost(float, tag = "2")]
    pub y: f32,
    #[prost(float, tag = "3")]
    pub z: f32,
    #[prost(int32, tag = "4")]
    pub reserved: i32,
}

/// Angular rate in deg/s.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct GyroData {
    #[prost(float, tag = "1")]
    pub x: f32,
    #[prost(float, tag = "2")]
    pub y: f32,
    #[prost(float, tag = "3")]
    pub z: f32,
    #[prost(int32, tag = "4")]
    pub reserved: i32,
}

/// Module orientation as a unit quaternion in a world frame (magnetic north, gravity).
#[derive(Clone, Copy, PartialEq, Message)]
pub struct QuaternionData {
    #[prost(float, tag = "1")]
    pub w: f32,
    #[prost(float, tag = "2")]
    pub x: f32,
    #[prost(float, tag = "3")]
    pub y: f32,
    #[prost(float, tag = "4")]
    pub z: f32,
    #[prost(float, tag = "5")]
    pub reserved: f32,
}

/// `imuproto.ImuPacket`. proto3 omits zero fields; absent sub-messages read as all zeros.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct ImuPacket {
    /// Unix ns on the phone's clock; the sample's time (not the RTP time).
    #[prost(uint64, tag = "1")]
    pub ts_ns: u64,
    #[prost(message, optional, tag = "2")]
    pub accel_data: Option<AccelData>,
    #[prost(message, optional, tag = "3")]
    pub gyro_data: Option<GyroData>,
    #[prost(message, optional, tag = "4")]
    pub quaternion_data: Option<QuaternionData>,
}

impl ImuPacket {
    /// Decodes one RTP payload. Nothing is allocated: all fields are inline.
    pub fn decode_payload(payload: &[u8]) -> Result<Self, ImuError> {
        ImuPacket::decode(payload).map_err(|source| ImuError::Decode {
            len: payload.len(),
            source,
        })
    }

    /// Appends the protobuf encoding to `out` (reused by the caller).
    pub fn encode_payload(&self, out: &mut Vec<u8>) {
        // Encoding into a Vec cannot run out of space, the only error prost reports.
        out.reserve(self.encoded_len());
        let _ = self.encode(out);
    }

    pub fn from_sample(s: &ImuSample) -> Self {
        let [gx, gy, gz] = s.gyro_dps;
        let [ax, ay, az] = s.accel_g;
        let [w, x, y, z] = s.quaternion;
        ImuPacket {
            ts_ns: s.time.0.max(0) as u64,
            accel_data: Some(AccelData {
                x: ax,
                y: ay,
                z: az,
                reserved: 0,
            }),
            gyro_data: Some(GyroData {
                x: gx,
                y: gy,
                z: gz,
                reserved: 0,
            }),
            quaternion_data: Some(QuaternionData {
                w,
                x,
                y,
                z,
                reserved: 0.0,
            }),
        }
    }

    pub fn to_sample(&self) -> ImuSample {
        let a = self.accel_data.unwrap_or_default();
        let g = self.gyro_data.unwrap_or_default();
        let q = self.quaternion_data.unwrap_or_default();
        ImuSample {
            time: UnixNanos(i64::try_from(self.ts_ns).unwrap_or(i64::MAX)),
            gyro_dps: [g.x, g.y, g.z],
            accel_g: [a.x, a.y, a.z],
            quaternion: [q.w, q.x, q.y, q.z],
        }
    }
}

/// Iterates the records of an `extimu ps<N>.raw` file: each item is one ImuPacket's bytes. Ends
/// after yielding an error for a record that overruns the buffer.
pub fn ext_imu_records(buf: &[u8]) -> impl Iterator<Item = Result<&[u8], ImuError>> + '_ {
    let mut offset = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || offset >= buf.len() {
            return None;
        }
        let rest = &buf[offset..];
        let declared = match rest.first_chunk::<2>() {
            Some(l) => usize::from(u16::from_le_bytes(*l)),
            None => usize::MAX,
        };
        match rest.get(2..).and_then(|r| r.get(..declared)) {
            Some(record) => {
                offset += 2 + declared;
                Some(Ok(record))
            }
            None => {
                failed = true;
                Some(Err(ImuError::RecordOverrun {
                    offset,
                    declared: declared.min(u16::MAX as usize),
                    available: rest.len().saturating_sub(2),
                }))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::PathBuf;

    fn repo_file(rel: &str) -> Vec<u8> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(rel);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// `imu ps1.raw` of the same recording holds the same samples already decoded by the phone
    /// (LE: i64 ns, gyro xyz, accel xyz, quaternion wxyz; `imu.dtype`), an independent reference.
    fn reference_samples(raw: &[u8]) -> Vec<ImuSample> {
        raw.chunks_exact(48)
            .map(|r| {
                let f = |i: usize| f32::from_le_bytes(r[8 + 4 * i..12 + 4 * i].try_into().unwrap());
                ImuSample {
                    time: UnixNanos(i64::from_le_bytes(r[..8].try_into().unwrap())),
                    gyro_dps: [f(0), f(1), f(2)],
                    accel_g: [f(3), f(4), f(5)],
                    quaternion: [f(6), f(7), f(8), f(9)],
                }
            })
            .collect()
    }

    /// Six real packets (fixtures/neon, see fixtures/README.md for provenance).
    #[test]
    fn decodes_real_device_packets() {
        let ext = repo_file("fixtures/neon/extimu_ps1_first6.raw");
        let want = reference_samples(&repo_file("fixtures/neon/imu_ps1_first6.raw"));
        let got: Vec<ImuSample> = ext_imu_records(&ext)
            .map(|r| ImuPacket::decode_payload(r.unwrap()).unwrap().to_sample())
            .collect();
        assert_eq!(got.len(), 6);
        assert_eq!(got, want);
        assert_eq!(got[0].time, UnixNanos(1_760_676_790_103_992_534));
        for s in &got {
            let n: f32 = s.quaternion.iter().map(|v| v * v).sum();
            assert!((n - 1.0).abs() < 1e-3, "quaternion norm^2 {n}");
            let g: f32 = s.accel_g.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((0.8..1.2).contains(&g), "|accel| {g} g, expected about 1 g");
        }
    }

    /// The whole stream of the shared demo recording: every record decodes, re-encodes to its
    /// exact bytes (prost writes fields in tag order and skips zeros, like the phone) and agrees
    /// with the decoded stream.
    #[test]
    fn decodes_the_whole_demo_recording() {
        let dir = "../shared/data/neon-demo-recording";
        let ext = repo_file(&format!("{dir}/extimu ps1.raw"));
        let want = reference_samples(&repo_file(&format!("{dir}/imu ps1.raw")));
        let mut n = 0;
        let mut buf = Vec::new();
        for (i, r) in ext_imu_records(&ext).enumerate() {
            let bytes = r.unwrap();
            let p = ImuPacket::decode_payload(bytes).unwrap();
            assert_eq!(p.to_sample(), want[i], "record {i}");
            buf.clear();
            p.encode_payload(&mut buf);
            assert_eq!(buf, bytes, "record {i} re-encoded");
            n += 1;
        }
        assert_eq!(n, 969);
        assert_eq!(want.len(), 969);
    }

    #[test]
    fn missing_fields_decode_as_zero() {
        assert_eq!(
            ImuPacket::decode_payload(&[]).unwrap().to_sample().time,
            UnixNanos(0)
        );
        // Only tsNs = 5.
        let s = ImuPacket::decode_payload(&[0x08, 5]).unwrap().to_sample();
        assert_eq!(
            (s.time, s.gyro_dps, s.quaternion),
            (UnixNanos(5), [0.0; 3], [0.0; 4])
        );
        assert!(matches!(
            ImuPacket::decode_payload(&[0x12, 9, 0]),
            Err(ImuError::Decode { len: 3, .. })
        ));
        let recs: Vec<_> = ext_imu_records(&[1, 0, 0x08, 3, 0, 0x08]).collect();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0], Ok(&[0x08][..]));
        assert_eq!(
            recs[1],
            Err(ImuError::RecordOverrun {
                offset: 3,
                declared: 3,
                available: 1
            })
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(p) = ImuPacket::decode_payload(&b) {
                let _ = p.to_sample();
            }
            for r in ext_imu_records(&b) {
                let _ = r.map(ImuPacket::decode_payload);
            }
        }

        #[test]
        fn sample_round_trip(t in 0i64..i64::MAX, f in proptest::collection::vec(-1e6f32..1e6, 10)) {
            let s = ImuSample { time: UnixNanos(t), gyro_dps: [f[0], f[1], f[2]],
                accel_g: [f[3], f[4], f[5]], quaternion: [f[6], f[7], f[8], f[9]] };
            let mut buf = Vec::new();
            ImuPacket::from_sample(&s).encode_payload(&mut buf);
            let back = ImuPacket::decode_payload(&buf).unwrap().to_sample();
            // -0.0 is a zero field, omitted on the wire: compare values, not bits.
            prop_assert_eq!(back, s);
        }
    }
}
