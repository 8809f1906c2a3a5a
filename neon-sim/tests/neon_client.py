"""Drives neon-sim with the official Pupil Labs real-time client (simple API) and prints what it
received as JSON lines, for bench-scenarios/tests/neon_python_client.rs to check against the
fixture. Usage: python neon_client.py HOST HTTP_PORT MIN_FRAMES MIN_GAZE TIMEOUT_S"""

import json
import sys
import time

from pupil_labs.realtime_api.simple import Device


def main() -> int:
    host, port = sys.argv[1], int(sys.argv[2])
    min_frames, min_gaze, timeout_s = int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    device = Device(address=host, port=port)
    print(json.dumps({"kind": "status", "phone": device.phone_name,
                      "serial": device.module_serial}), flush=True)
    frames, gaze = 0, {}
    deadline = time.monotonic() + timeout_s
    try:
        while (frames < min_frames or len(gaze) < min_gaze) and time.monotonic() < deadline:
            if len(gaze) < min_gaze:
                g = device.receive_gaze_datum(timeout_seconds=1.0)
                if g is not None and g.timestamp_unix_seconds not in gaze:
                    gaze[g.timestamp_unix_seconds] = g
                    print(json.dumps({"kind": "gaze", "t": g.timestamp_unix_seconds,
                                      "x": g.x, "y": g.y, "worn": bool(g.worn)}), flush=True)
            if frames < min_frames:
                f = device.receive_scene_video_frame(timeout_seconds=0.001 if len(gaze) < min_gaze else 1.0)
                if f is not None:
                    frames += 1
                    h, w = f.bgr_pixels.shape[:2]
                    print(json.dumps({"kind": "frame", "t": f.timestamp_unix_seconds,
                                      "w": int(w), "h": int(h),
                                      "mean": float(f.bgr_pixels.mean())}), flush=True)
    finally:
        device.close()
    print(json.dumps({"kind": "done", "frames": frames, "gaze": len(gaze)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
