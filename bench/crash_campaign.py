"""Crash campaign: CYCLES times, mixed load (HTTP telemetry, MQTT QoS 1,
line protocol, attributes, device creation and renames) against a real
server, kill -9 at a random moment (seals and compactions run every second
with a small head, so kills land in them too), restart on the same data
directory, and check that every acknowledged write is there and that the
log replayed without damage. Prints one line per cycle and a summary.
Run through bench/crash-campaign.sh.

  python3 bench/crash_campaign.py --binary PATH [--cycles 100] [--seed N]
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
import requests

EMAIL, PASSWORD = "crash@example.com", "crash-password-123"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, binary, data, http, mqtt_port):
        self.log = open(os.path.join(os.path.dirname(data), "server.log"), "ab")
        env = dict(os.environ, TRIBUTARY_ADMIN_EMAIL=EMAIL, TRIBUTARY_ADMIN_PASSWORD=PASSWORD,
                   TRIBUTARY_TSDB_SEAL_INTERVAL_SECS="1", TRIBUTARY_TSDB_MAX_HEAD_POINTS="4000",
                   TRIBUTARY_WAL_SEGMENT_BYTES="262144", TRIBUTARY_ACCESS_TOKEN_TTL_SECS="86400")
        self.start_offset = self.log.tell()
        self.p = subprocess.Popen(
            [binary, "serve", "--data-dir", data, "--http-listen", f"127.0.0.1:{http}",
             "--mqtt-listen", f"127.0.0.1:{mqtt_port}", "--log", "info"],
            stdout=self.log, stderr=self.log, env=env)
        self.base = f"http://127.0.0.1:{http}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if requests.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("server did not become ready")

    def kill9(self):
        self.p.send_signal(signal.SIGKILL)
        self.p.wait()


class Acked:
    """What the server acknowledged, by kind."""

    def __init__(self):
        self.lock = threading.Lock()
        self.points = {}   # device id -> set of ts (key "n", value == ts)
        self.lines = {}    # series key -> set of ts
        self.attrs = {}    # device id -> (seq acked last, highest seq sent)
        self.devices = {}  # device id -> name acked last

    def add(self, table, key, ts):
        with self.lock:
            table.setdefault(key, set()).add(ts)


def session(base):
    r = requests.post(base + "/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}, timeout=10)
    r.raise_for_status()
    return r.json()["access_token"]


def load(base, mqtt_port, fixtures, acked, stop, clock):
    """Runs every writer until `stop`; each records only what was acknowledged."""
    token, key, devices = fixtures["token"], fixtures["key"], fixtures["devices"]
    auth = {"Authorization": f"Bearer {token}"}

    def next_ts():
        with acked.lock:
            clock[0] += 1
            return clock[0]

    def http_writer(dev):
        s = requests.Session()
        while not stop.is_set():
            batch = [next_ts() for _ in range(random.randint(1, 50))]
            body = [{"ts": ts, "values": {"n": ts}} for ts in batch]
            try:
                r = s.post(f"{base}/api/v1/{dev['token']}/telemetry", json=body, timeout=5)
            except requests.RequestException:
                return
            if r.status_code == 200:
                with acked.lock:
                    acked.points.setdefault(dev["id"], set()).update(batch)

    def mqtt_writer(dev):
        pending = {}
        lock = threading.Lock()

        def on_publish(c, u, mid, rc, props):
            with lock:
                ts = pending.pop(mid, None)
            if ts is not None and not rc.is_failure:
                acked.add(acked.points, dev["id"], ts)

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"crash-{dev['id']}", protocol=mqtt.MQTTv5)
        c.username_pw_set(dev["token"])
        c.on_publish = on_publish
        try:
            c.connect("127.0.0.1", mqtt_port, keepalive=30)
        except OSError:
            return
        c.loop_start()
        while not stop.is_set():
            ts = next_ts()
            with lock:
                info = c.publish("v1/devices/me/telemetry", json.dumps({"ts": ts, "values": {"n": ts}}), qos=1)
                pending[info.mid] = ts
            time.sleep(0.002)
        c.loop_stop()

    def line_writer(series):
        s = requests.Session()
        while not stop.is_set():
            batch = [next_ts() for _ in range(random.randint(1, 100))]
            body = "\n".join(f"{series} n={ts}i {ts}" for ts in batch)
            try:
                r = s.post(f"{base}/api/v2/write?precision=ms", data=body,
                           headers={"Authorization": f"Token {key}"}, timeout=5)
            except requests.RequestException:
                return
            if r.status_code == 204:
                with acked.lock:
                    acked.lines.setdefault(series, set()).update(batch)

    def attribute_writer(dev):
        s = requests.Session()
        seq = acked.attrs.get(dev["id"], (0, 0))[1]
        while not stop.is_set():
            seq += 1
            with acked.lock:
                last, _ = acked.attrs.get(dev["id"], (0, 0))
                acked.attrs[dev["id"]] = (last, seq)
            try:
                r = s.post(f"{base}/api/v1/{dev['token']}/attributes", json={"seq": seq}, timeout=5)
            except requests.RequestException:
                return
            if r.status_code == 200:
                with acked.lock:
                    acked.attrs[dev["id"]] = (seq, acked.attrs[dev["id"]][1])

    def admin():
        s = requests.Session()
        n = 0
        while not stop.is_set():
            n += 1
            name = f"made-{fixtures['cycle']}-{n}"
            try:
                r = s.post(f"{base}/api/v1/devices", json={"name": name}, headers=auth, timeout=5)
                if r.status_code != 201:
                    continue
                d = r.json()
                with acked.lock:
                    acked.devices[d["id"]] = name
                renamed = name + "-renamed"
                r = s.patch(f"{base}/api/v1/devices/{d['id']}", json={"name": renamed}, headers=auth, timeout=5)
                if r.status_code == 200:
                    with acked.lock:
                        acked.devices[d["id"]] = renamed
            except requests.RequestException:
                return

    threads = [threading.Thread(target=http_writer, args=(d,)) for d in devices[:3]]
    threads += [threading.Thread(target=mqtt_writer, args=(d,)) for d in devices[3:5]]
    threads += [threading.Thread(target=line_writer, args=(f"crash,host=h{i}",)) for i in range(2)]
    threads += [threading.Thread(target=attribute_writer, args=(d,)) for d in devices[5:7]]
    threads.append(threading.Thread(target=admin))
    for t in threads:
        t.daemon = True
        t.start()
    return threads


def verify(base, fixtures, acked):
    """Every write acknowledged in the last cycle is readable (earlier cycles
    were checked after their own restart); returns a list of problems."""
    token = session(base)
    auth = {"Authorization": f"Bearer {token}"}
    problems = []

    def history(dev_id, want):
        lo, hi = min(want), max(want)
        r = requests.get(f"{base}/api/v1/devices/{dev_id}/telemetry?keys=n&limit=100000&order=asc"
                         f"&from={lo}&to={hi}", headers=auth, timeout=30)
        r.raise_for_status()
        return {p["ts"] for p in r.json().get("n", [])}

    with acked.lock:
        points = {k: set(v) for k, v in acked.points.items() if v}
        lines = {k: set(v) for k, v in acked.lines.items() if v}
        attrs = dict(acked.attrs)
        devices = dict(acked.devices)
        acked.points, acked.lines, acked.devices = {}, {}, {}
    for dev_id, want in points.items():
        missing = want - history(dev_id, want)
        if missing:
            problems.append(f"device {dev_id}: {len(missing)} of {len(want)} acked points missing")
    for series, want in lines.items():
        r = requests.get(f"{base}/api/v1/devices?name={requests.utils.quote(series)}&limit=10",
                         headers=auth, timeout=30).json()["data"]
        match = [d for d in r if d["name"] == series]
        if not match:
            problems.append(f"series {series}: device missing")
            continue
        missing = want - history(match[0]["id"], want)
        if missing:
            problems.append(f"series {series}: {len(missing)} of {len(want)} acked points missing")
    for dev_id, (last_acked, highest) in attrs.items():
        r = requests.get(f"{base}/api/v1/devices/{dev_id}/attributes?scope=client&keys=seq",
                         headers=auth, timeout=30).json()
        got = r.get("client", {}).get("seq", {}).get("value", 0)
        if not (last_acked <= got <= highest):
            problems.append(f"device {dev_id}: attribute seq {got}, acked {last_acked}, sent up to {highest}")
    for dev_id, name in devices.items():
        r = requests.get(f"{base}/api/v1/devices/{dev_id}", headers=auth, timeout=30)
        if r.status_code != 200:
            problems.append(f"created device {dev_id} missing ({r.status_code})")
        elif r.json()["name"] not in (name, name + "-renamed"):
            problems.append(f"device {dev_id} named {r.json()['name']!r}, acked {name!r}")
    return problems, sum(len(v) for v in points.values()) + sum(len(v) for v in lines.values()), len(devices)


def replay_damage(log_path, offset):
    """What the server logged since `offset`: torn log tails (a write cut by
    the kill, never acknowledged), real damage, and whether it panicked."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    torn = text.count("torn write-ahead log tail")
    damaged = len(re.findall(r"damaged write-ahead log segment|does not follow|block unreadable|chunk unreadable", text))
    return torn, damaged, "panicked" in text


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--cycles", type=int, default=100)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--max-load-secs", type=float, default=4.0)
    a = ap.parse_args()
    random.seed(a.seed)
    work = tempfile.mkdtemp(prefix="crash-")
    data = os.path.join(work, "data")
    log_path = os.path.join(work, "server.log")
    http, mqtt_port = free_port(), free_port()
    acked = Acked()
    clock = [int(time.time() * 1000)]
    fixtures = None
    failures = 0
    torn_total = 0
    total_points = total_devices = 0
    started = time.time()
    try:
        for cycle in range(1, a.cycles + 1):
            server = Server(a.binary, data, http, mqtt_port)
            offset = server.start_offset
            if fixtures is None:
                token = session(server.base)
                auth = {"Authorization": f"Bearer {token}"}
                devs = []
                for i in range(7):
                    r = requests.post(server.base + "/api/v1/devices", json={"name": f"crash-{i}"},
                                      headers=auth, timeout=10).json()
                    devs.append({"id": r["id"], "token": r["access_token"]})
                key = requests.post(server.base + "/api/v1/api-keys", json={"name": "crash", "scope": "write"},
                                    headers=auth, timeout=10).json()["key"]
                fixtures = {"token": token, "key": key, "devices": devs}
            else:
                problems, points, devices = verify(server.base, fixtures, acked)
                total_points += points
                total_devices += devices
                torn, damaged, panicked = replay_damage(log_path, offset)
                torn_total += torn
                if panicked:
                    problems.append("the server panicked")
                if damaged:
                    problems.append(f"{damaged} damaged log segments or blocks")
                if problems:
                    failures += 1
                    print(f"cycle {cycle - 1}: FAILED after restart: {problems[:5]}", flush=True)
                else:
                    print(f"cycle {cycle - 1}: ok: {points} acknowledged points, {devices} devices "
                          f"verified ({torn} torn log tail cut off)", flush=True)
            fixtures["cycle"] = cycle
            stop = threading.Event()
            load(server.base, mqtt_port, fixtures, acked, stop, clock)
            time.sleep(random.uniform(0.3, a.max_load_secs))
            server.kill9()
            stop.set()
            time.sleep(0.3)
        server = Server(a.binary, data, http, mqtt_port)
        problems, points, devices = verify(server.base, fixtures, acked)
        total_points += points
        total_devices += devices
        if problems:
            failures += 1
            print(f"cycle {a.cycles}: FAILED after restart: {problems[:5]}", flush=True)
        else:
            print(f"cycle {a.cycles}: ok: {points} acknowledged points, {devices} devices verified", flush=True)
        server.p.terminate()
        server.p.wait()
        print(f"summary: {a.cycles} kill -9 cycles (seed {a.seed}) in {time.time() - started:.0f}s, "
              f"{total_points} acknowledged points (HTTP, MQTT QoS 1, line protocol), "
              f"{total_devices} devices created and renamed, attributes on 2 devices: "
              f"{a.cycles - failures} cycles verified, {failures} with a loss or damage; "
              f"{torn_total} torn log tails (unacknowledged writes cut by the kill) cut off", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
