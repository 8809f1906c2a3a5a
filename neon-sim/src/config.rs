//! neon-sim's settings: what to serve, on which ports, which clock, and which faults to inject.
//! The clap derive doubles as the binary's `--help`, so flags are documented once, here.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use pipeline::cli::parse_duration;

/// Which times the simulated device reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ClockMode {
    /// Shift every time so the fixture's start is the simulator's start: the client sees
    /// current device times (SR NTP, IMU and event payload times rewritten), so end-to-end
    /// latency is meaningful.
    Live,
    /// Bytes and times exactly as recorded (the first pass through the fixture is byte-exact).
    Recorded,
}

/// `--stall STREAM[@T]`: that stream sends no RTP from sim time T (default 0) on; RTCP goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    pub stream: String,
    pub at: Duration,
}

pub fn parse_stall(s: &str) -> Result<Stall, String> {
    let (stream, at) = match s.split_once('@') {
        Some((name, t)) => (name, parse_time(t)?),
        None => (s, Duration::ZERO),
    };
    if stream.is_empty() {
        return Err(format!("--stall '{s}' names no stream"));
    }
    Ok(Stall {
        stream: stream.to_string(),
        at,
    })
}

/// A point in sim time: like a duration but zero is allowed.
pub fn parse_time(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    parse_duration(s)
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("'{s}' is not a percentage"))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(format!("'{s}' is outside 0..=100"));
    }
    Ok(v)
}

/// Milliseconds of jitter: a finite 0..=10000 (an infinite or huge one would overflow the
/// packet schedule, a negative one is an empty random range).
fn parse_jitter(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("jitter '{s}' is not a number of milliseconds"))?;
    if !(0.0..=10_000.0).contains(&v) {
        return Err(format!("jitter '{s}' is outside 0..=10000 ms"));
    }
    Ok(v)
}

fn parse_loopback(s: &str) -> Result<Ipv4Addr, String> {
    let ip: Ipv4Addr = s
        .parse()
        .map_err(|_| format!("'{s}' is not an IPv4 address"))?;
    if !ip.is_loopback() {
        return Err(format!("neon-sim serves loopback only, not {ip}"));
    }
    Ok(ip)
}

#[derive(clap::Args, Clone, Debug)]
pub struct SimConfig {
    /// The fixture (.etfx) to serve.
    pub fixture: PathBuf,
    /// Loopback address to serve on (and to advertise in /api/status).
    #[arg(long, default_value = "127.0.0.1", value_parser = parse_loopback)]
    pub bind: Ipv4Addr,
    /// HTTP API port (0 = ephemeral; a Neon uses 8080).
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
    /// RTSP port (0 = ephemeral; a Neon uses 8086).
    #[arg(long, default_value_t = 8086)]
    pub rtsp_port: u16,
    /// Time-echo port (0 = ephemeral; a Neon uses 12321).
    #[arg(long, default_value_t = 12321)]
    pub time_echo_port: u16,
    /// live: times shifted to now; recorded: times and bytes as in the fixture.
    #[arg(long, value_enum, default_value_t = ClockMode::Live)]
    pub clock: ClockMode,
    /// Replay the fixture in a loop (RTP sequence numbers and timestamps keep counting up).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub r#loop: bool,
    /// Fault: at this sim time close every connection (HTTP, WebSocket, RTSP, RTP, time echo)
    /// and refuse new ones for --drop-for.
    #[arg(long, value_parser = parse_time, requires = "drop_for")]
    pub drop_at: Option<Duration>,
    /// Fault: how long the ports stay closed after --drop-at.
    #[arg(long, value_parser = parse_duration, requires = "drop_at")]
    pub drop_for: Option<Duration>,
    /// Fault: repeat the --drop-at drop every PERIOD (start to start; longer than --drop-for).
    #[arg(long, value_parser = parse_duration, requires = "drop_at")]
    pub drop_every: Option<Duration>,
    /// Fault: with --drop-every, how many drops in all (default: no limit).
    #[arg(long, requires = "drop_every")]
    pub drop_count: Option<u32>,
    /// Fault: every PERIOD, each session sends one junk datagram (or interleaved frame) among
    /// its packets: random bytes, a truncated RTP header, or an RTP header with a foreign SSRC,
    /// in turn, on its RTP channel and then its RTCP channel.
    #[arg(long, value_parser = parse_duration)]
    pub garbage_every: Option<Duration>,
    /// Fault: STREAM[@T] stops sending RTP from sim time T (default 0); repeatable.
    #[arg(long = "stall", value_parser = parse_stall)]
    pub stalls: Vec<Stall>,
    /// Fault: drop this percentage of RTP packets (seeded, per session).
    #[arg(long, default_value_t = 0.0, value_parser = parse_percent)]
    pub loss: f64,
    /// Fault: delay each packet by a random 0..MS milliseconds (seeded; order is kept;
    /// 0-10000).
    #[arg(long, default_value_t = 0.0, value_parser = parse_jitter)]
    pub jitter: f64,
    /// Phone quirk over TCP (app 2.9.31, official client PR #89): answer SETUP with
    /// `Transport: RTP/AVP/TCP;unicast`, without echoing `interleaved=`; the session still
    /// sends on the channels the client asked for.
    #[arg(long)]
    pub tcp_no_interleaved_echo: bool,
    /// Phone quirk over TCP (official client PR #90): after every N interleaved packets of a
    /// session, write a stray `RTSP/1.0 400 Bad Request` reply (no CSeq, a short body with
    /// Content-Length) between two `$` frames. The phone does it after client receiver
    /// reports; a packet count reproduces it whatever the client sends.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub tcp_stray_400_every: Option<u64>,
    /// Seed of --loss and --jitter.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_range_checked() {
        assert_eq!(parse_jitter("2.5"), Ok(2.5));
        for bad in ["-1", "1e20", "inf", "NaN", "x"] {
            assert!(parse_jitter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn stall_specs() {
        assert_eq!(
            parse_stall("imu@2.5s").unwrap(),
            Stall {
                stream: "imu".into(),
                at: Duration::from_millis(2500)
            }
        );
        assert_eq!(parse_stall("gaze").unwrap().at, Duration::ZERO);
        assert!(parse_stall("@1s").is_err());
        assert!(parse_stall("imu@x").is_err());
        assert!(parse_percent("101").is_err());
        assert_eq!(parse_percent("5%").unwrap(), 5.0);
        assert!(parse_loopback("10.0.0.1").is_err());
        assert!(parse_loopback("127.0.0.2").is_ok());
    }
}
