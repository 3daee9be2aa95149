"""--mqtt against a real Mosquitto on 127.0.0.1 (issue 22): events and snapshots arrive, a
broker killed and restarted loses nothing within the queue, what overflows it is counted,
a wrong password is one line, and the Home Assistant discovery payloads are what Home
Assistant documents (topic form, keys, templates that render on the counts); mqtts:// to
the same broker with a certificate the test makes (openssl)."""
from __future__ import annotations

import getpass
import json
import os
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import require
from test_counting import EXPECTED, LINE, MODEL_ARGS, ZONE, walk_clip  # noqa: F401

from yolo_tpu import detect

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
OPENSSL = shutil.which("openssl")
PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
USER, PASSWORD = "cam", "s3cret-pass"
TIMEOUT = 30.0
# <discovery_prefix>/<component>/[<node_id>/]<object_id>/config, ids of [a-zA-Z0-9_-]
HA_TOPIC = re.compile(r"^homeassistant/(sensor|binary_sensor)/([A-Za-z0-9_-]+/)?"
                      r"[A-Za-z0-9_-]+/config$")


def broker_missing() -> str | None:
    if not os.path.exists(MOSQUITTO) or not os.path.exists(PASSWD):
        return "no mosquitto (apt-get install mosquitto; .ci/run does)"
    try:
        import paho.mqtt.client  # noqa: F401
    except ImportError:
        return "paho-mqtt is not installed (pip install '.[mqtt]')"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """Mosquitto with its own config, password file and persistence, on one port; `stop`
    (SIGTERM: it saves its sessions) and `start` again on the same port."""

    def __init__(self, folder: Path, tls: tuple[Path, Path] | None = None):
        self.port = free_port()
        self.folder = folder
        subprocess.run([PASSWD, "-b", "-c", str(folder / "passwd"), USER, PASSWORD],
                       check=True, capture_output=True)
        tls_conf = f"certfile {tls[0]}\nkeyfile {tls[1]}\n" if tls else ""
        (folder / "mosquitto.conf").write_text(
            f"listener {self.port} 127.0.0.1\n{tls_conf}allow_anonymous false\n"
            f"password_file {folder / 'passwd'}\npersistence true\n"
            f"persistence_location {folder}/\nlog_dest stderr\nlog_type all\n"
            # started as root, Mosquitto would become user `mosquitto`, who cannot write here
            f"user {getpass.getuser()}\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Broker":
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.folder / "mosquitto.conf")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)  # stderr: unbuffered, line by line
        for line in self.proc.stderr:  # its own word that it listens, not a sleep
            if "running" in line:
                break
        else:
            raise RuntimeError("mosquitto did not start")
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()  # drain its log
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(TIMEOUT)
            self.proc = None


@pytest.fixture
def broker(tmp_path):
    require(broker_missing(), "mosquitto and paho-mqtt")
    b = Broker(tmp_path).start()
    yield b
    b.stop()


class Subscriber:
    """A persistent-session client collecting every message on `topics` (QoS 1)."""

    def __init__(self, port: int, topics: list[str], ca: Path | None = None):
        import paho.mqtt.client as mqtt
        self.messages: list = []
        self.cond = threading.Condition()
        self.connected = threading.Event()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-subscriber",
                        clean_session=False)
        c.username_pw_set(USER, PASSWORD)
        if ca is not None:
            c.tls_set(ca_certs=str(ca))
        c.reconnect_delay_set(1, 2)

        def on_connect(client, userdata, flags, reason, properties=None):
            for t in topics:
                client.subscribe(t, qos=1)
            self.connected.set()

        def on_message(client, userdata, msg):
            with self.cond:
                self.messages.append((msg.topic, msg.payload, msg.retain))
                self.cond.notify_all()
        c.on_connect, c.on_message = on_connect, on_message
        c.connect("127.0.0.1", port)
        c.loop_start()
        assert self.connected.wait(TIMEOUT)
        self.client = c

    def wait(self, predicate) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.messages), TIMEOUT)

    def topic(self, name: str) -> list[bytes]:
        with self.cond:
            return [p for t, p, _ in self.messages if t == name]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def test_events_snapshots_counts_and_discovery_arrive(tiny_int8_model, walk_clip, broker,
                                                      tmp_path, capsys, monkeypatch):
    jinja2 = pytest.importorskip("jinja2")  # Home Assistant's template language
    sub = Subscriber(broker.port, ["yolo_tpu/door/#", "homeassistant/#"])
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv("YOLO_TPU_MQTT_USER", USER)          # from the environment
    monkeypatch.setenv("YOLO_TPU_MQTT_PASSWORD", PASSWORD)
    status = detect.main(["--model", str(tiny_int8_model), "--video", str(walk_clip),
                          *MODEL_ARGS, "--line", LINE, "--zone", ZONE, "--events", str(events),
                          "--mqtt", f"mqtt://127.0.0.1:{broker.port}/yolo_tpu/door"])
    err = capsys.readouterr().err
    assert status == 0, err
    assert PASSWORD not in err
    expected = [json.loads(x) for x in events.read_text().splitlines()]
    assert len(expected) == 10
    assert sub.wait(lambda m: sum(t == "yolo_tpu/door/event" for t, _, _ in m) >= 10)
    assert sub.wait(lambda m: ("yolo_tpu/door/status", b"offline", False) in m)
    got = [json.loads(p) for p in sub.topic("yolo_tpu/door/event")]
    assert got == expected
    for e in expected:
        jpeg = sub.topic(f"yolo_tpu/door/snapshot/{e['id']}")
        assert len(jpeg) == 1
        image = cv2.imdecode(np.frombuffer(jpeg[0], np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (480, 640, 3)
    counts = json.loads(sub.topic("yolo_tpu/door/counts")[-1])
    assert counts == EXPECTED
    # the run's report: every event, snapshot and counts update published, none dropped
    report = re.search(rf"mqtt mqtt://127.0.0.1:{broker.port}/yolo_tpu/door: (\d+) messages "
                       r"published, 0 dropped", err)
    assert report and int(report.group(1)) == 2 * len(expected) + len(
        sub.topic("yolo_tpu/door/counts")), err
    # Home Assistant discovery: retained configs on the documented topics
    configs = {t: json.loads(p) for t, p, _ in sub.messages if t.startswith("homeassistant/")}
    assert configs and all(HA_TOPIC.match(t) for t in configs), list(configs)
    env = jinja2.Environment()
    env.filters["tojson"] = json.dumps
    states = {}
    for topic, c in configs.items():
        assert {"name", "unique_id", "state_topic", "value_template", "device",
                "availability_topic"} <= set(c)
        assert c["state_topic"] == "yolo_tpu/door/counts"
        assert c["availability_topic"] == "yolo_tpu/door/status"
        assert c["device"]["identifiers"]
        states[c["name"]] = env.from_string(c["value_template"]).render(value_json=counts)
        if "json_attributes_template" in c:
            json.loads(env.from_string(c["json_attributes_template"]).render(value_json=counts))
    assert states == {"door in": "2", "door out": "2", "left entered": "4",
                      "left objects": "2", "left occupancy": "ON"}
    occupancy = next(c for t, c in configs.items() if t.startswith("homeassistant/binary_"))
    assert occupancy["device_class"] == "occupancy"
    assert len({c["unique_id"] for c in configs.values()}) == len(configs)
    sub.close()


def test_broker_restart_loses_nothing_within_the_queue(broker):
    from yolo_tpu.mqtt import MqttSink
    sub = Subscriber(broker.port, ["q/event"])
    sink = MqttSink.from_url(f"mqtt://{USER}:{PASSWORD}@127.0.0.1:{broker.port}/q?discovery=",
                             "cam", queue=10)  # what --mqtt-queue 10 gives
    no_jpeg = bytes  # events without a snapshot: one message each

    def send(first: int, n: int) -> None:
        for i in range(first, first + n):
            sink.write({"id": i, "event": "cross"}, no_jpeg)

    send(1, 3)
    assert sub.wait(lambda m: len(m) >= 3)
    broker.stop()  # the broker goes away mid-run
    send(4, 12)    # 10 fit in the queue, 2 do not
    assert sink.dropped == 2
    broker.start()
    assert sub.wait(lambda m: len(m) >= 13)
    sink.close()
    ids = [json.loads(p)["id"] for p in sub.topic("q/event")]
    assert sorted(set(ids)) == list(range(1, 14)), ids  # all but the two beyond the bound
    assert "2 dropped" in sink.report()
    sub.close()


def test_wrong_password_is_one_line(tiny_int8_model, walk_clip, broker, capsys):
    status = detect.main(["--model", str(tiny_int8_model), "--video", str(walk_clip),
                          "--line", LINE, "--mqtt",
                          f"mqtt://{USER}:wrong-pass@127.0.0.1:{broker.port}/x"])
    err = capsys.readouterr().err
    assert status == 2
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert errors == [f"error: --mqtt mqtt://127.0.0.1:{broker.port}/x: the broker refused "
                      "the connection: Not authorized"], err
    assert "wrong-pass" not in err and "Traceback" not in err


def test_bad_mqtt_urls_say_why():
    from yolo_tpu.mqtt import MqttError, parse_url
    for url, why in [("http://h/x", "expected mqtt://"), ("mqtt://h", "topic prefix"),
                     ("mqtt://h:99999/x", "port"), ("mqtt://u:pw@h/a/#", "without # or +")]:
        with pytest.raises(MqttError, match=re.escape(why)) as e:
            parse_url(url, env={})
        assert "pw" not in str(e.value)
    t = parse_url("mqtts://h/p", env={"YOLO_TPU_MQTT_USER": "u", "YOLO_TPU_MQTT_PASSWORD": "p"})
    assert (t.tls, t.port, t.user, t.password) == (True, 8883, "u", "p")


def test_mqtt_queue_values_are_refused_in_one_line(tiny_int8_model, walk_clip, capsys):
    for args, why in [(["--mqtt-queue", "0"], "must be in 1..1000000, got 0"),
                      (["--mqtt-queue", "ten"], "not an integer: 'ten'"),
                      (["--line", LINE, "--mqtt-queue", "5"],
                       "--mqtt-queue applies to --mqtt only")]:
        try:
            status = detect.main(["--model", str(tiny_int8_model), "--video", str(walk_clip),
                                  *args])
        except SystemExit as e:  # argparse's refusal
            status = e.code
        err = capsys.readouterr().err
        assert status == 2
        errors = [line for line in err.splitlines() if "error:" in line]
        assert len(errors) == 1 and why in errors[0] and "Traceback" not in err, err


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key."""
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


@pytest.fixture
def tls_broker(tmp_path):
    require(broker_missing() or (None if OPENSSL else "no openssl"), "mosquitto, paho, openssl")
    cert, key = self_signed(tmp_path, "broker")
    b = Broker(tmp_path, tls=(cert, key)).start()
    yield b, cert
    b.stop()


def test_mqtts_with_a_private_ca(tls_broker, tiny_int8_model, walk_clip, tmp_path, capsys):
    from yolo_tpu.mqtt import MqttSink
    broker, ca = tls_broker
    sub = Subscriber(broker.port, ["t/#"], ca=ca)
    url = f"mqtts://{USER}:{PASSWORD}@127.0.0.1:{broker.port}/t"
    sink = MqttSink.from_url(f"{url}?ca={ca}&discovery=", "cam")
    sink.write({"id": 1, "event": "cross"}, lambda: b"\xff\xd8jpeg")
    assert sub.wait(lambda m: len(m) >= 3)  # status, event, snapshot
    sink.close()
    assert json.loads(sub.topic("t/event")[0]) == {"id": 1, "event": "cross"}
    assert sub.topic("t/snapshot/1") == [b"\xff\xd8jpeg"]
    sub.close()
    # a certificate the given CA did not sign: one line, before any frame is read
    other, _ = self_signed(tmp_path, "other")
    status = detect.main(["--model", str(tiny_int8_model), "--video", str(walk_clip),
                          "--line", LINE, "--mqtt", f"{url}?ca={other}"])
    err = capsys.readouterr().err
    assert status == 2
    errors = [line for line in err.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: --mqtt mqtts://127.0.0.1:{broker.port}/t: cannot connect: "), err
    assert "CERTIFICATE_VERIFY_FAILED" in errors[0], err
    assert PASSWORD not in err and "Traceback" not in err
