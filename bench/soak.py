"""Soak: a steady telemetry rate for a long time, with live WebSocket clients
and MQTT subscribers connecting and disconnecting beside it. Every minute it
samples the server's RSS, open files, the rate reached, HTTP ack latency and
live delivery latency; at the end it fits a line to RSS after the warm-up
and reports its slope. Run through bench/soak.sh, which starts the server.

  python3 bench/soak.py --base URL --mqtt HOST:PORT --pid PID --token T [--secs 3600] [--rate 20000]
"""

import argparse
import asyncio
import json
import queue
import random
import statistics
import threading
import time

import paho.mqtt.client as mqtt
import requests
import websockets

from proc_stats import open_files, rss_mib

KEYS = [f"k{i}" for i in range(10)]
POINTS_PER_REQUEST = 100  # 10 keys x 10 timestamps


def pct(values, p):
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.points = 0
        self.acks = []
        self.live = []
        self.errors = 0

    def take(self):
        with self.lock:
            out = (self.points, self.acks, self.live, self.errors)
            self.points, self.acks, self.live, self.errors = 0, [], [], 0
            return out


def api(base, token, method, path, body=None):
    r = requests.request(method, base + path, json=body,
                         headers={"Authorization": f"Bearer {token}"}, timeout=30)
    r.raise_for_status()
    return r.json() if r.content else None


def writer(base, tokens, rate, stop, stats, seq):
    """Sends POINTS_PER_REQUEST-point batches at rate/threads points/s."""
    s = requests.Session()
    per_second = rate / POINTS_PER_REQUEST
    interval = 1.0 / per_second
    next_at = time.monotonic()
    while not stop.is_set():
        now = time.monotonic()
        if now < next_at:
            time.sleep(next_at - now)
        next_at += interval
        token = random.choice(tokens)
        base_ts = int(time.time() * 1000) * 10 + next(seq) % 10
        body = [{"ts": base_ts // 10 + i, "values": {k: random.random() for k in KEYS}}
                for i in range(POINTS_PER_REQUEST // len(KEYS))]
        t0 = time.monotonic()
        try:
            r = s.post(f"{base}/api/v1/{token}/telemetry", data=json.dumps(body),
                       headers={"content-type": "application/json"}, timeout=30)
            ok = r.status_code == 200
        except requests.RequestException:
            ok = False
        with stats.lock:
            if ok:
                stats.points += POINTS_PER_REQUEST
                stats.acks.append((time.monotonic() - t0) * 1000)
            else:
                stats.errors += 1


def prober(base, probe_token, stop):
    """One point a second on the probe device, stamped with the send time."""
    s = requests.Session()
    while not stop.wait(0.2):
        s.post(f"{base}/api/v1/{probe_token}/telemetry",
               data=json.dumps({"sent": time.time() * 1000}),
               headers={"content-type": "application/json"}, timeout=30)


async def live_clients(ws_base, token, probe_id, device_ids, stop, stats):
    """A steady probe client measuring delivery latency, and clients that
    come and go on random devices."""

    async def probe():
        while not stop.is_set():
            try:
                async with websockets.connect(f"{ws_base}/api/v1/live?token={token}") as ws:
                    await ws.send(json.dumps({"type": "subscribe", "device": probe_id, "keys": ["sent"]}))
                    started = time.monotonic()
                    # A fresh connection every 10 minutes, as a dashboard reloads.
                    while not stop.is_set() and time.monotonic() - started < 600:
                        try:
                            msg = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                        except asyncio.TimeoutError:
                            continue
                        if msg.get("type") == "update":
                            for v in msg.get("points", {}).get("sent", []) or []:
                                value = v.get("value") if isinstance(v, dict) else None
                                if isinstance(value, (int, float)):
                                    with stats.lock:
                                        stats.live.append(time.time() * 1000 - value)
            except Exception:
                await asyncio.sleep(1)

    async def churn():
        while not stop.is_set():
            try:
                async with websockets.connect(f"{ws_base}/api/v1/live?token={token}") as ws:
                    await ws.send(json.dumps({"type": "subscribe", "device": random.choice(device_ids)}))
                    end = time.monotonic() + random.uniform(5, 30)
                    while time.monotonic() < end and not stop.is_set():
                        try:
                            await asyncio.wait_for(ws.recv(), 1.0)
                        except asyncio.TimeoutError:
                            pass
            except Exception:
                await asyncio.sleep(1)

    await asyncio.gather(probe(), *[churn() for _ in range(8)])


def mqtt_churn(host, port, key, device_ids, stop):
    """MQTT subscribers to one device's telemetry each, connecting and leaving."""
    n = 0
    while not stop.is_set():
        n += 1
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"soak-{n}", protocol=mqtt.MQTTv5)
        c.username_pw_set("soak", key)
        try:
            c.connect(host, port, keepalive=30)
            c.loop_start()
            c.subscribe(f"$devices/{random.choice(device_ids)}/telemetry", qos=random.choice([0, 1]))
            stop.wait(random.uniform(5, 20))
            c.disconnect()
            c.loop_stop()
        except Exception:
            stop.wait(1)


def slope_per_hour(samples):
    """Least-squares slope of (minute, MiB) pairs, in MiB per hour."""
    if len(samples) < 2:
        return 0.0
    xs = [m for m, _ in samples]
    ys = [r for _, r in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--mqtt", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--secs", type=int, default=3600)
    ap.add_argument("--rate", type=int, default=20000)
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--warmup-min", type=int, default=5)
    ap.add_argument("--sample-secs", type=int, default=60, help="seconds per sample (a 'minute')")
    a = ap.parse_args()

    devices = [api(a.base, a.token, "POST", "/api/v1/devices", {"name": f"soak-{i}"})
               for i in range(a.devices)]
    probe = api(a.base, a.token, "POST", "/api/v1/devices", {"name": "soak-probe"})
    key = api(a.base, a.token, "POST", "/api/v1/api-keys", {"name": "soak", "scope": "read"})["key"]
    tokens = [d["access_token"] for d in devices]
    ids = [d["id"] for d in devices]

    stop = threading.Event()
    stats = Stats()
    seq = iter(range(1 << 62))
    threads = [threading.Thread(target=writer, args=(a.base, tokens, a.rate / 4, stop, stats, seq), daemon=True)
               for _ in range(4)]
    threads.append(threading.Thread(target=prober, args=(a.base, probe["access_token"], stop), daemon=True))
    host, port = a.mqtt.rsplit(":", 1)
    threads += [threading.Thread(target=mqtt_churn, args=(host, int(port), key, ids, stop), daemon=True)
                for _ in range(4)]
    ws_base = a.base.replace("http://", "ws://")

    # bench/soak.sh gives access tokens a lifetime longer than the run.
    threads.append(threading.Thread(
        target=lambda: asyncio.run(live_clients(ws_base, a.token, probe["id"], ids, stop, stats)),
        daemon=True))
    for t in threads:
        t.start()

    rss, troughs, phased = [], [], []
    started = time.monotonic()
    minute = 0
    print("minute rss_mib rss_min rss_max open_files points_per_s ack_p50_ms ack_p99_ms live_p99_ms errors "
          "head_points index_entries mqtt_sessions", flush=True)
    while time.monotonic() - started < a.secs:
        end = started + a.sample_secs * (minute + 1)
        # RSS every 5 s within the minute: its low point shows what stays
        # between seals, its high point the seal and compaction peaks.
        within = []
        while time.monotonic() < end:
            within.append(rss_mib(a.pid))
            time.sleep(max(0.0, min(5.0, end - time.monotonic())))
        minute += 1
        points, acks, live, errors = stats.take()
        r, fds = rss_mib(a.pid), open_files(a.pid)
        within.append(r)
        gauges = metrics(a.base)
        if minute > a.warmup_min:
            rss.append((minute * a.sample_secs / 60, r))
            troughs.append((minute * a.sample_secs / 60, min(within)))
            entries = gauges.get("tributary_tsdb_index_entries")
            if entries is not None:
                phased.append((minute * a.sample_secs / 60, min(within), float(entries)))
        fmt = lambda v: "-" if v is None else f"{v:.1f}"
        print(f"{minute} {r:.1f} {min(within):.1f} {max(within):.1f} {fds} {points / a.sample_secs:.0f} "
              f"{fmt(pct(acks, 0.5))} {fmt(pct(acks, 0.99))} {fmt(pct(live, 0.99))} {errors} "
              f"{gauges.get('tributary_tsdb_head_points', '-')} {gauges.get('tributary_tsdb_index_entries', '-')} "
              f"{gauges.get('tributary_mqtt_sessions', '-')}", flush=True)
    stop.set()
    # RSS swings with the compaction cycle (blocks pile up, then merge); the
    # samples taken when the engine holds the fewest index entries are at the
    # same point of that cycle, so their slope is the one free of it.
    fewest = min((e for _, _, e in phased), default=None)
    same_phase = [(m, r) for m, r, e in phased if e == fewest]
    if len(same_phase) >= 2:
        print(f"same phase of compaction (index entries {fewest:.0f}) at minutes "
              f"{', '.join(f'{m:.0f}' for m, _ in same_phase)}: RSS low points "
              f"{', '.join(f'{r:.0f}' for _, r in same_phase)} MiB, slope {slope_per_hour(same_phase):+.1f} MiB/h",
              flush=True)
    if rss:
        print(f"summary: {a.secs}s at {a.rate} points/s target, {a.devices} devices x {len(KEYS)} keys, "
              f"RSS slope after minute {a.warmup_min}: {slope_per_hour(rss):+.1f} MiB/h sampled each minute, "
              f"{slope_per_hour(troughs):+.1f} MiB/h over each minute's low point "
              f"(first {rss[0][1]:.0f} MiB, last {rss[-1][1]:.0f} MiB)", flush=True)
    else:
        print("summary: too short for a slope", flush=True)


def metrics(base):
    """The server's gauges and counters from /metrics, by name (labels kept in the name)."""
    try:
        text = requests.get(f"{base}/metrics", timeout=10).text
    except requests.RequestException:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = value
    return out


if __name__ == "__main__":
    main()
