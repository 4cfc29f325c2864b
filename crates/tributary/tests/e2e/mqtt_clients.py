"""MQTT scenarios run with paho-mqtt against a real Tributary server.

Called by tests/e2e/mqtt_broker.rs as `python3 mqtt_clients.py SCENARIO CONTEXT_JSON`.
Each scenario asserts what a client sees and exits non-zero on the first
difference; it prints "ok SCENARIO" when everything held.
"""

import json
import queue
import subprocess
import sys
import threading
import time
import urllib.request

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

SCENARIO = sys.argv[1]
CTX = json.loads(sys.argv[2])
HOST, PORT = CTX["host"], int(CTX["port"])

SUCCESS = 0
NO_MATCHING_SUBSCRIBERS = 16
NOT_AUTHORIZED = 135
TOPIC_NAME_INVALID = 144
PAYLOAD_FORMAT_INVALID = 153
TOPIC_FILTER_INVALID = 143
SESSION_TAKEN_OVER = 142


def rc(code):
    """A paho reason code (or int) as an int."""
    return getattr(code, "value", code)


class Client:
    """A paho client that records what it receives."""

    def __init__(self, client_id, user, password=None, v5=True, clean=True,
                 expiry=None, props=None, will=None):
        self.messages = queue.Queue()
        self.disconnects = queue.Queue()
        self.acks = {}
        self.subacks = {}
        self.connected = threading.Event()
        self.connack = None
        self.cond = threading.Condition()
        self.v5 = v5
        if v5:
            self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                 protocol=mqtt.MQTTv5)
        else:
            self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                                 protocol=mqtt.MQTTv311, clean_session=clean)
        # Never reconnect within a scenario: a take-over must stay taken over.
        self.c.reconnect_delay_set(60, 120)
        self.c.username_pw_set(user, password)
        if will:
            self.c.will_set(*will)
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, m: self.messages.put(m)
        self.c.on_publish = self._on_publish
        self.c.on_subscribe = self._on_subscribe
        self.c.on_disconnect = lambda c, u, f, code, p: self.disconnects.put(rc(code))
        if v5:
            cp = props or Properties(PacketTypes.CONNECT)
            if expiry is not None:
                cp.SessionExpiryInterval = expiry
            self.c.connect(HOST, PORT, keepalive=30, clean_start=clean, properties=cp)
        else:
            self.c.connect(HOST, PORT, keepalive=30)
        self.c.loop_start()
        assert self.connected.wait(10), f"{client_id}: no CONNACK"

    def _on_connect(self, c, u, flags, code, props):
        self.connack = (rc(code), flags.session_present, props)
        self.connected.set()

    def _on_publish(self, c, u, mid, code, props):
        with self.cond:
            self.acks[mid] = rc(code)
            self.cond.notify_all()

    def _on_subscribe(self, c, u, mid, codes, props):
        with self.cond:
            self.subacks[mid] = [rc(x) for x in codes]
            self.cond.notify_all()

    def _wait(self, table, mid):
        with self.cond:
            assert self.cond.wait_for(lambda: mid in table, 10), f"no answer to packet {mid}"
            return table[mid]

    def publish(self, topic, payload, qos=1, retain=False, props=None):
        """Publishes and waits for the acknowledgement; returns its reason code."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=props)
        if qos == 0:
            return None
        return self._wait(self.acks, info.mid)

    def subscribe(self, *filters, props=None):
        """Subscribes to (filter, qos or SubscribeOptions) pairs; returns the reason codes."""
        if self.v5:
            subs = [(f, o if isinstance(o, SubscribeOptions) else SubscribeOptions(qos=o))
                    for f, o in filters]
            _, mid = self.c.subscribe(subs, properties=props)
        else:
            _, mid = self.c.subscribe(list(filters))
        return self._wait(self.subacks, mid)

    def next(self, timeout=5.0):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("expected a message, got none")

    def nothing(self, wait=0.7):
        try:
            m = self.messages.get(timeout=wait)
        except queue.Empty:
            return
        raise AssertionError(f"expected no message, got {m.topic} {m.payload!r}")

    def close(self):
        """Disconnects and waits until the DISCONNECT is out and the socket closed."""
        self.c.disconnect()
        try:
            self.disconnects.get(timeout=5)
        except queue.Empty:
            raise AssertionError("disconnect did not complete")
        self.c.loop_stop()
        # Give the server a moment to read the DISCONNECT before the next step.
        time.sleep(0.2)


def rest(method, path, body=None, token=None):
    req = urllib.request.Request(CTX["base"] + path, method=method,
                                 data=None if body is None else json.dumps(body).encode())
    req.add_header("Authorization", "Bearer " + (token or CTX["token"]))
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=15) as res:
            text = res.read()
            return res.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def tenant_broker():
    key, reader, other_key = CTX["key"], CTX["read_key"], CTX["other_key"]
    sub = Client("sub", key)
    assert sub.subscribe(("sensors/#", 1), ("$devices/+/telemetry", 1)) == [1, 1]
    everything = Client("everything", key)
    assert everything.subscribe(("#", 2)) == [2]
    other = Client("other-tenant", other_key)
    assert other.subscribe(("#", 1)) == [1]
    pub = Client("pub", key)

    # Routing within the tenant, with MQTT 5 reason codes.
    assert pub.publish("sensors/1/temp", "21.5") == SUCCESS
    m = sub.next()
    assert (m.topic, m.payload, m.qos, m.retain) == ("sensors/1/temp", b"21.5", 1, False)
    assert everything.next().topic == "sensors/1/temp"
    assert pub.publish("nobody/listens", "x") == SUCCESS
    assert everything.next().topic == "nobody/listens"
    lonely = Client("lonely", key)
    everything.close()
    assert lonely.publish("nobody/listens", "x") == NO_MATCHING_SUBSCRIBERS

    # QoS 2 end to end, delivered once at the subscription's QoS.
    q2 = Client("q2", key)
    assert q2.subscribe(("exact/#", 2)) == [2]
    assert pub.publish("exact/1", "once", qos=2) == SUCCESS
    m = q2.next()
    assert (m.payload, m.qos) == (b"once", 2)
    q2.nothing()

    # Retained messages: kept, delivered on subscribe with the flag, cleared by an empty one.
    # Nobody subscribes yet (MQTT 5 says so in the PUBACK), but it is kept.
    assert pub.publish("status/door", "open", retain=True) == NO_MATCHING_SUBSCRIBERS
    late = Client("late", key)
    late.subscribe(("status/#", 1))
    m = late.next()
    assert (m.topic, m.payload, m.retain) == ("status/door", b"open", True)
    assert pub.publish("status/door", "", retain=True) == SUCCESS
    later = Client("later", key)
    later.subscribe(("status/#", 1))
    later.nothing()

    # Device telemetry arrives on $devices/{id}/telemetry; `#` does not match `$` topics.
    watcher = Client("hash-only", key)
    watcher.subscribe(("#", 1))
    status, _ = rest("POST", f"/api/v1/{CTX['device_token']}/telemetry",
                     {"ts": 1700000000000, "values": {"temp": 19.5, "on": True}})
    assert status == 200, status
    m = sub.next()
    assert m.topic == f"$devices/{CTX['device_id']}/telemetry", m.topic
    assert json.loads(m.payload) == [{"ts": 1700000000000, "values": {"temp": 19.5, "on": True}}]
    watcher.nothing()

    # A read-scoped key subscribes but may not publish; `$` topics and
    # malformed shared subscriptions are refused with their reason codes.
    r = Client("reader", reader)
    assert r.subscribe(("sensors/#", 1)) == [1]
    assert r.publish("sensors/2/temp", "1") == NOT_AUTHORIZED
    assert pub.publish("$devices/x/telemetry", "{}") == TOPIC_NAME_INVALID
    assert pub.subscribe(("$share//sensors/#", 1)) == [TOPIC_FILTER_INVALID]

    # The other tenant saw none of it.
    other.nothing()
    # MQTT 3.1.1 clients share the same tenant topics.
    old = Client("v311", key, v5=False)
    assert old.subscribe(("sensors/#", 1)) == [1]
    assert pub.publish("sensors/3/temp", "3") == SUCCESS
    m = old.next()
    assert (m.topic, m.payload) == ("sensors/3/temp", b"3")


def sessions():
    key = CTX["key"]
    # A persistent session keeps subscriptions and queues QoS 1 messages while away.
    keeper = Client("keeper", key, clean=False, expiry=300)
    assert keeper.connack[1] is False
    keeper.subscribe(("jobs/#", 1))
    keeper.close()
    pub = Client("pub", key)
    for i in range(3):
        assert pub.publish(f"jobs/{i}", f"job {i}") == SUCCESS
    pub.publish("jobs/qos0", "not kept", qos=0)
    # A QoS 1 round trip on the same connection: the QoS 0 publish was routed before it.
    pub.publish("sync/after-qos0", "x")
    keeper = Client("keeper", key, clean=False, expiry=300)
    assert keeper.connack[1] is True, "session present"
    got = [keeper.next().payload for _ in range(3)]
    assert got == [b"job 0", b"job 1", b"job 2"], got
    keeper.nothing()
    keeper.close()
    # A clean start discards it.
    fresh = Client("keeper", key, clean=True)
    assert fresh.connack[1] is False
    assert pub.publish("jobs/9", "x") == NO_MATCHING_SUBSCRIBERS
    fresh.close()

    # MQTT 3.1.1: clean-session false does the same.
    old = Client("old-keeper", key, v5=False, clean=False)
    old.subscribe(("old/#", 1))
    old.close()
    assert pub.publish("old/1", "queued") == SUCCESS
    old = Client("old-keeper", key, v5=False, clean=False)
    assert old.connack[1] is True
    assert old.next().payload == b"queued"

    # Client-id take-over: the first connection is told why it is closed.
    first = Client("twin", key)
    second = Client("twin", key)
    assert first.disconnects.get(timeout=5) == SESSION_TAKEN_OVER
    assert second.subscribe(("twin/#", 1)) == [1]

    # Will messages: sent when a client vanishes, not when it says goodbye.
    watcher = Client("watcher", key)
    watcher.subscribe(("wills/#", 1))
    polite = Client("polite", key, will=("wills/polite", "gone", 1, False))
    polite.close()
    watcher.nothing()
    dying = subprocess.Popen([
        "mosquitto_sub", "-h", HOST, "-p", str(PORT), "-V", "mqttv311", "-u", key,
        "-i", "dying", "-t", "x/y", "--will-topic", "wills/dying", "--will-payload", "gone",
        "--will-qos", "1"])
    time.sleep(0.7)
    dying.kill()
    dying.wait()
    m = watcher.next()
    assert (m.topic, m.payload) == ("wills/dying", b"gone")


def mqtt5_features():
    key = CTX["key"]
    pub = Client("pub", key)

    # Message expiry: an expired retained message is not delivered; a live one
    # carries its remaining lifetime.
    p = Properties(PacketTypes.PUBLISH)
    p.MessageExpiryInterval = 1
    pub.publish("exp/short", "brief", retain=True, props=p)
    p = Properties(PacketTypes.PUBLISH)
    p.MessageExpiryInterval = 60
    pub.publish("exp/long", "lasting", retain=True, props=p)
    time.sleep(2.2)
    s = Client("exp", key)
    s.subscribe(("exp/#", 1))
    m = s.next()
    assert m.payload == b"lasting"
    assert 0 < m.properties.MessageExpiryInterval <= 60
    s.nothing()

    # Properties travel; subscription identifiers come back; no-local holds.
    sp = Properties(PacketTypes.SUBSCRIBE)
    sp.SubscriptionIdentifier = 7
    s.subscribe(("props/#", SubscribeOptions(qos=1, noLocal=True)), props=sp)
    p = Properties(PacketTypes.PUBLISH)
    p.UserProperty = [("origin", "test")]
    p.ContentType = "application/json"
    p.ResponseTopic = "replies/1"
    p.CorrelationData = b"abc"
    pub.publish("props/a", "{}", props=p)
    m = s.next()
    assert m.properties.UserProperty == [("origin", "test")]
    assert m.properties.ContentType == "application/json"
    assert m.properties.ResponseTopic == "replies/1"
    assert m.properties.CorrelationData == b"abc"
    assert m.properties.SubscriptionIdentifier == [7]
    s.publish("props/self", "mine")
    s.nothing()

    # Topic aliases: the second publish names the topic by alias only.
    p = Properties(PacketTypes.PUBLISH)
    p.TopicAlias = 1
    pub.publish("props/aliased", "first", props=p)
    p = Properties(PacketTypes.PUBLISH)
    p.TopicAlias = 1
    pub.publish("", "second", props=p)
    assert [(m.topic, m.payload) for m in (s.next(), s.next())] == [
        ("props/aliased", b"first"), ("props/aliased", b"second")]

    # Maximum packet size of the client: larger messages are not sent to it.
    cp = Properties(PacketTypes.CONNECT)
    cp.MaximumPacketSize = 256
    small = Client("small", key, props=cp)
    small.subscribe(("big/#", 1))
    pub.publish("big/1", "x" * 1000)
    pub.publish("big/2", "tiny")
    assert small.next().payload == b"tiny"
    small.nothing()

    # Retain handling 2: no retained messages on subscribe.
    n = Client("no-retained", key)
    n.subscribe(("exp/#", SubscribeOptions(qos=1, retainHandling=2)))
    n.nothing()

    # An empty client id gets one assigned; CONNACK announces the limits.
    anon = Client("", key)
    props = anon.connack[2]
    assert props.AssignedClientIdentifier.startswith("auto-")
    assert props.TopicAliasMaximum > 0 and props.ReceiveMaximum > 0
    assert props.SharedSubscriptionAvailable == 1

    # A device on MQTT 5 gets a negative PUBACK for a bad payload and stays connected.
    dev = Client("dev5", CTX["device_token"])
    assert dev.publish("v1/devices/me/telemetry", "{not json") == PAYLOAD_FORMAT_INVALID
    assert dev.publish("v1/devices/me/telemetry", '{"temp": 1.25}') == SUCCESS
    assert dev.publish("somewhere/else", "{}") == TOPIC_NAME_INVALID
    assert dev.disconnects.empty()


def device_api():
    device_id, token = CTX["device_id"], CTX["device_token"]
    dev = Client("thermostat", token, v5=False)
    assert dev.subscribe(("v1/devices/me/attributes", 1), ("v1/devices/me/attributes/response/+", 1),
                         ("v1/devices/me/rpc/request/+", 1), ("v1/devices/me/rpc/response/+", 1),
                         ("not/mine/#", 1)) == [1, 1, 1, 1, 128]

    # Attribute request: client and shared values by key.
    assert dev.publish("v1/devices/me/attributes", '{"fw": "1.2", "model": "T1"}') == SUCCESS
    dev.publish("v1/devices/me/attributes/request/1", '{"clientKeys": "fw", "sharedKeys": "interval"}')
    m = dev.next()
    assert m.topic == "v1/devices/me/attributes/response/1", m.topic
    assert json.loads(m.payload) == {"client": {"fw": "1.2"}, "shared": {"interval": 30}}

    # Shared attributes are pushed when they change, and deletions too.
    status, _ = rest("POST", f"/api/v1/devices/{device_id}/attributes/shared", {"interval": 60})
    assert status == 204
    m = dev.next()
    assert (m.topic, json.loads(m.payload)) == ("v1/devices/me/attributes", {"interval": 60})
    status, _ = rest("DELETE", f"/api/v1/devices/{device_id}/attributes/shared?keys=interval")
    assert status == 204
    assert json.loads(dev.next().payload) == {"deleted": ["interval"]}

    # Server-side RPC: the device answers "echo", ignores "sleep".
    def answer(c, u, m):
        if m.topic.startswith("v1/devices/me/rpc/request/"):
            req = json.loads(m.payload)
            rid = m.topic.rsplit("/", 1)[1]
            if req["method"] == "echo":
                c.publish(f"v1/devices/me/rpc/response/{rid}", json.dumps(req["params"]), qos=1)
            return
        dev.messages.put(m)
    dev.c.on_message = answer
    status, body = rest("POST", f"/api/v1/devices/{device_id}/rpc",
                        {"method": "echo", "params": {"pin": 7, "on": True}})
    assert (status, body) == (200, {"pin": 7, "on": True}), (status, body)
    started = time.time()
    status, body = rest("POST", f"/api/v1/devices/{device_id}/rpc",
                        {"method": "sleep", "timeout_ms": 500})
    assert status == 504 and body["type"] == "/problems/rpc-timeout", (status, body)
    assert time.time() - started < 3
    status, _ = rest("POST", f"/api/v1/devices/{device_id}/rpc", {"method": "sleep", "oneway": True})
    assert status == 202

    # Client-side RPC: the server answers getCurrentTime.
    dev.publish("v1/devices/me/rpc/request/5", '{"method": "getCurrentTime", "params": {}}')
    m = dev.next()
    assert m.topic == "v1/devices/me/rpc/response/5"
    assert abs(json.loads(m.payload)["time"] - time.time() * 1000) < 60_000

    # QoS 2 telemetry is stored exactly once.
    assert dev.publish("v1/devices/me/telemetry", '{"ts": 1700000000000, "values": {"q2": 5}}',
                       qos=2) == SUCCESS
    dev.close()
    status, body = rest("GET", f"/api/v1/devices/{device_id}/telemetry?keys=q2")
    assert status == 200 and len(body["q2"]) == 1, body
    # With the device gone, an RPC is refused at once.
    status, body = rest("POST", f"/api/v1/devices/{device_id}/rpc", {"method": "echo"})
    assert status == 409 and body["type"] == "/problems/device-offline", (status, body)


def shared_subscriptions():
    """`$share/{group}/{filter}`: each message to one member of each group,
    in turn; a plain subscriber still gets every one; what a member leaves
    unacknowledged goes to another member."""
    key = CTX["key"]
    pub = Client("share-pub", key)
    workers = [Client(f"worker-{i}", key) for i in range(3)]
    for w in workers:
        assert w.subscribe(("$share/pool/jobs/+", 1)) == [1]
    # A second group and a plain subscriber on the same topics.
    audit = Client("share-audit", key)
    assert audit.subscribe(("$share/audit/jobs/#", 1)) == [1]
    plain = Client("share-plain", key)
    assert plain.subscribe(("jobs/+", 1)) == [1]
    # MQTT 3.1.1 clients join groups too.
    old = Client("share-v311", key, v5=False)
    assert old.subscribe(("$share/pool/jobs/+", 1)) == [1]
    members = workers + [old]

    for i in range(12):
        assert pub.publish(f"jobs/{i}", str(i)) == SUCCESS
    got = {}
    for idx, w in enumerate(members):
        got[idx] = []
        while True:
            try:
                m = w.messages.get(timeout=1.0)
            except queue.Empty:
                break
            assert m.topic.startswith("jobs/"), m.topic
            got[idx].append(int(m.payload))
    all_got = sorted(x for v in got.values() for x in v)
    assert all_got == list(range(12)), got
    # Round robin: each of the four members got three.
    assert sorted(len(v) for v in got.values()) == [3, 3, 3, 3], got
    audit_got = sorted(int(audit.next().payload) for _ in range(12))
    assert audit_got == list(range(12))
    audit.nothing()
    plain_got = sorted(int(plain.next().payload) for _ in range(12))
    assert plain_got == list(range(12))

    # A member that leaves without acknowledging: its QoS 1 message goes to
    # another member. paho acknowledges automatically, so this one is a raw
    # socket that subscribes and never sends PUBACK.
    for w in workers[1:] + [old]:
        w.close()
    import socket
    raw = socket.create_connection((HOST, PORT))
    cid = b"share-silent"
    user = key.encode()
    var = b"\x00\x04MQTT\x04\x82\x00\x1e"  # 3.1.1, clean session + username
    payload = len(cid).to_bytes(2, "big") + cid + len(user).to_bytes(2, "big") + user
    body = var + payload
    raw.sendall(bytes([0x10]) + encode_len(len(body)) + body)
    assert raw.recv(4)[:2] == b"\x20\x02"
    topic = b"$share/pool/jobs/+"
    sub = b"\x00\x07" + len(topic).to_bytes(2, "big") + topic + b"\x01"
    raw.sendall(bytes([0x82]) + encode_len(len(sub)) + sub)
    assert raw.recv(5)[0] == 0x90
    # Two members now: workers[0] and the silent one; publish until the
    # silent one has received one (and not acknowledged it).
    raw.settimeout(0.5)
    seen = b""
    sent = []
    for i in range(100, 106):
        assert pub.publish(f"jobs/{i}", str(i)) == SUCCESS
        sent.append(i)
        try:
            seen += raw.recv(4096)
        except socket.timeout:
            pass
        if seen:
            break
    assert seen, "the silent member received nothing"
    first_worker = []
    while True:
        try:
            first_worker.append(int(workers[0].messages.get(timeout=0.5).payload))
        except queue.Empty:
            break
    missing = sorted(set(sent) - set(first_worker))
    assert len(missing) >= 1, (sent, first_worker)
    # The silent member drops off: what it held goes to workers[0].
    raw.close()
    redelivered = sorted(int(workers[0].next().payload) for _ in missing)
    assert redelivered == missing, (redelivered, missing)


def encode_len(n):
    """MQTT's variable-length remaining length."""
    out = bytearray()
    while True:
        b, n = n % 128, n // 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


{"tenant_broker": tenant_broker, "sessions": sessions, "mqtt5_features": mqtt5_features,
 "device_api": device_api, "shared_subscriptions": shared_subscriptions}[SCENARIO]()
print("ok", SCENARIO)
