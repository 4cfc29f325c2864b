"""Drives bench/stalled-consumer.sh: 8 writers post 100-point batches to the
device HTTP API as fast as they are acknowledged; each second it prints the
server's RSS, the log's retained bytes and back-pressure time (from
/metrics), the export consumer's lag and the points acknowledged. After
--stall seconds it runs --grow (the disk gets room), waits for the consumer
to catch up, and prints the summary.
"""

import argparse
import re
import subprocess
import threading
import time

import requests

from proc_stats import rss_mib

WRITERS = 8
POINTS = 100


def metric(text, name, labels=""):
    m = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--stall", type=int, default=60)
    ap.add_argument("--budget-mib", type=int, default=128)
    ap.add_argument("--grow", required=True)
    a = ap.parse_args()

    login = requests.post(f"{a.base}/api/v1/auth/login",
                          json={"email": "stall@example.com", "password": "stall-password-123"}).json()
    bearer = {"authorization": f"Bearer {login['access_token']}"}
    tokens = []
    for i in range(WRITERS):
        d = requests.post(f"{a.base}/api/v1/devices", headers=bearer, json={"name": f"w{i}"}).json()
        tokens.append(d["access_token"])

    acked = [0]
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w, token):
        s = requests.Session()
        seq = 0
        while not stop.is_set():
            ts = 1_700_000_000_000 + seq * POINTS
            body = [{"ts": ts + i, "values": {"v": i}} for i in range(POINTS)]
            try:
                r = s.post(f"{a.base}/api/v1/{token}/telemetry", json=body, timeout=600)
            except requests.RequestException:
                continue
            if r.status_code == 200:
                with lock:
                    acked[0] += POINTS
            seq += 1

    threads = [threading.Thread(target=writer, args=(w, t), daemon=True) for w, t in enumerate(tokens)]
    for t in threads:
        t.start()

    print(f"8 writers x {POINTS} points/request; export consumer on a full 1 MiB tmpfs; "
          f"wal_max_retained_bytes {a.budget_mib} MiB")
    print("| s | phase | acked points/s | RSS MiB | retained MiB | back-pressure s (total) | export lag events |")
    print("|---|---|---|---|---|---|---|")
    start = time.time()
    last = 0
    peak_rss = 0.0
    peak_retained = 0.0
    grown_at = None
    caught_up_at = None
    rates = {"before budget": [], "at budget": [], "after room": []}
    while True:
        time.sleep(1)
        now = time.time() - start
        with lock:
            n = acked[0]
        rate, last = n - last, n
        text = requests.get(f"{a.base}/metrics").text
        retained = metric(text, "tributary_log_retained_bytes") / 2**20
        backpressure = metric(text, "tributary_log_backpressure_ms_total") / 1000
        lag = metric(text, "tributary_log_consumer_lag_events", '{consumer="export"}')
        rss = rss_mib(a.pid)
        peak_rss = max(peak_rss, rss)
        peak_retained = max(peak_retained, retained)
        if grown_at is None:
            phase = "at budget" if retained >= a.budget_mib * 0.9 else "before budget"
        else:
            phase = "after room"
        rates[phase].append(rate)
        print(f"| {now:.0f} | {phase} | {rate} | {rss:.0f} | {retained:.0f} | {backpressure:.1f} | {lag:.0f} |", flush=True)
        if grown_at is None and now >= a.stall:
            subprocess.run(a.grow, shell=True, check=True)
            grown_at = now
        elif grown_at is not None and lag == 0 and caught_up_at is None:
            caught_up_at = now
        if caught_up_at is not None and now >= caught_up_at + 10:
            break
        if grown_at is not None and now > grown_at + 300:
            print("the consumer did not catch up within 300 s")
            break
    stop.set()
    avg = {k: (sum(v) / len(v) if v else 0) for k, v in rates.items()}
    print()
    print(f"peak RSS {peak_rss:.0f} MiB; peak retained {peak_retained:.0f} MiB (budget {a.budget_mib} MiB)")
    print(f"acked points/s: before the budget {avg['before budget']:.0f}, at the budget {avg['at budget']:.0f}, "
          f"after room was made {avg['after room']:.0f}")
    if caught_up_at is not None:
        print(f"export consumer caught up {caught_up_at - grown_at:.0f} s after the disk got room")


if __name__ == "__main__":
    main()
