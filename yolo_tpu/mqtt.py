"""`--mqtt mqtt[s]://[USER:PASS@]HOST[:PORT]/PREFIX`: events, counts and snapshots to a broker.

Topics (QoS 1):

    PREFIX/status             `online`, retained; the broker says `offline` if we vanish (LWT)
    PREFIX/event              one JSON event (`events.py`'s schema) per zone or line event
    PREFIX/snapshot/<id>      the annotated frame of event <id>, JPEG
    PREFIX/counts             the counts per line, zone and class (JSON, retained)

plus Home Assistant MQTT discovery (retained, under `homeassistant/`, re-sent when Home
Assistant announces itself on `homeassistant/status`): a sensor per line and direction and
per zone (objects entered, objects in it now) reading PREFIX/counts, and an occupancy
binary sensor per zone; all in one device, unavailable while PREFIX/status is `offline`.

paho-mqtt keeps QoS 1 messages until the broker acknowledges them, through disconnects,
and reconnects by itself; its queue is bounded (`queue` messages, `--mqtt-queue`, 1000 by
default; unacknowledged ones included): while the broker is away nothing within the bound
is lost, what comes beyond it is dropped and counted (`dropped`, in the run's report).

User and password come from the URL or from $YOLO_TPU_MQTT_USER / $YOLO_TPU_MQTT_PASSWORD
(the environment keeps them out of `ps` and shell history); they are never printed.
`mqtts://` is TLS with the system's CAs (`?ca=FILE` for a private CA); `?discovery=PREFIX`
moves Home Assistant's discovery prefix, `?discovery=` turns discovery off.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from . import __version__
from .sinks import SinkError

__all__ = ["MqttError", "MqttTarget", "parse_url", "MqttSink", "discovery_configs"]

USER_ENV, PASSWORD_ENV = "YOLO_TPU_MQTT_USER", "YOLO_TPU_MQTT_PASSWORD"
QUEUE = 1000            # messages kept while the broker is away
CONNECT_TIMEOUT_S = 10.0
HA_PREFIX = "homeassistant"
log = logging.getLogger("yolo_tpu")


class MqttError(SinkError):
    """A broker URL that is wrong or a broker that refuses us: one line, no password."""


@dataclass(frozen=True)
class MqttTarget:
    host: str
    port: int
    prefix: str
    tls: bool
    user: str | None
    password: str | None
    ca: str | None = None
    discovery: str = HA_PREFIX

    @property
    def display(self) -> str:
        """The URL without credentials (for messages)."""
        scheme = "mqtts" if self.tls else "mqtt"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}/{self.prefix}"


def parse_url(url: str, env: dict[str, str] | None = None) -> MqttTarget:
    """`mqtt[s]://[user:pass@]host[:port]/prefix[?ca=FILE&discovery=PREFIX]`; MqttError
    (without the password) when it is not one."""
    env = os.environ if env is None else env
    parts = urlsplit(url)
    safe = f"{parts.scheme}://{parts.hostname or ''}{parts.path}"
    if parts.scheme not in ("mqtt", "mqtts"):
        raise MqttError(f"--mqtt {safe}: expected mqtt://HOST[:PORT]/PREFIX or mqtts://...")
    try:
        port = parts.port
    except ValueError:
        raise MqttError(f"--mqtt {safe}: the port is not a number in 0-65535") from None
    if not parts.hostname:
        raise MqttError(f"--mqtt {safe}: no host")
    prefix = parts.path.strip("/")
    if not prefix or parts.fragment or "#" in url or "+" in prefix or "//" in prefix:
        raise MqttError(f"--mqtt {safe}: give a topic prefix without # or +, e.g. "
                        "mqtt://broker/yolo_tpu/door")
    query = parse_qs(parts.query, keep_blank_values=True)
    ca = query.get("ca", [None])[0]
    if ca is not None and not os.path.isfile(ca):
        raise MqttError(f"--mqtt {safe}: ca={ca}: no such file")
    user = unquote(parts.username) if parts.username else env.get(USER_ENV) or None
    password = unquote(parts.password) if parts.password else env.get(PASSWORD_ENV) or None
    tls = parts.scheme == "mqtts"
    return MqttTarget(parts.hostname, port or (8883 if tls else 1883), prefix, tls, user,
                      password, ca, query.get("discovery", [HA_PREFIX])[0].strip("/"))


# ---------------------------------------------------------------- Home Assistant discovery

def _node_id(prefix: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", prefix)


def discovery_configs(target: MqttTarget, source: str, lines: list[str],
                      zones: list[str]) -> dict[str, dict[str, Any]]:
    """topic -> retained config payload, per Home Assistant's MQTT discovery:
    `<discovery_prefix>/<component>/<node_id>/<object_id>/config`."""
    node = _node_id(target.prefix)
    device = {"identifiers": [f"yolo_tpu_{node}"], "name": f"yolo_tpu {source}",
              "manufacturer": "yolo_tpu", "model": "YOLO on the Edge TPU",
              "sw_version": __version__}
    common = {"state_topic": f"{target.prefix}/counts",
              "availability_topic": f"{target.prefix}/status",
              "payload_available": "online", "payload_not_available": "offline",
              "device": device}
    out: dict[str, dict[str, Any]] = {}

    def add(component: str, object_id: str, name: str, config: dict[str, Any]) -> None:
        uid = f"yolo_tpu_{node}_{object_id}"
        out[f"{target.discovery}/{component}/{node}/{object_id}/config"] = {
            "name": name, "unique_id": uid, **common, **config}

    def total(path: str) -> str:
        return "{{ value_json" + path + ".values() | sum }}"

    def per_class(path: str) -> dict[str, str]:
        return {"json_attributes_topic": f"{target.prefix}/counts",
                "json_attributes_template": "{{ value_json" + path + " | tojson }}"}

    counter = {"state_class": "total_increasing", "unit_of_measurement": "objects"}
    for line in lines:
        for direction in ("in", "out"):
            path = f"['lines']['{line}']['{direction}']"
            add("sensor", f"{line}_{direction}", f"{line} {direction}",
                {"value_template": total(path), **counter, **per_class(path)})
    for zone in zones:
        entered, now = f"['zones']['{zone}']['entered']", f"['zones']['{zone}']['occupancy']"
        add("sensor", f"{zone}_entered", f"{zone} entered",
            {"value_template": total(entered), **counter, **per_class(entered)})
        add("sensor", f"{zone}_objects", f"{zone} objects",
            {"value_template": total(now), "state_class": "measurement",
             "unit_of_measurement": "objects", **per_class(now)})
        add("binary_sensor", f"{zone}_occupancy", f"{zone} occupancy",
            {"device_class": "occupancy", "payload_on": "ON", "payload_off": "OFF",
             "value_template": "{{ 'ON' if (value_json" + now + ".values() | sum) > 0 "
                               "else 'OFF' }}"})
    return out


# ---------------------------------------------------------------- the sink

class MqttSink:
    """An event sink (`events.EventSink`) publishing to a broker through paho-mqtt."""

    def __init__(self, target: MqttTarget, source: str, lines: list[str] = (),
                 zones: list[str] = (), queue: int = QUEUE,
                 timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise MqttError("--mqtt needs paho-mqtt: pip install 'yolo_tpu[mqtt]'") from None
        self.target, self.source = target, source
        self.dropped = 0
        self.published = 0
        self.unacknowledged = 0
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._refused: str | None = None
        self._discovery = discovery_configs(target, source, list(lines), list(zones)) \
            if target.discovery else {}
        self._last_counts: bytes | None = None
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=f"yolo_tpu-{_node_id(target.prefix)}-{os.getpid()}",
                             clean_session=True)
        if target.user is not None:
            client.username_pw_set(target.user, target.password)
        if target.tls:
            try:
                client.tls_set(ca_certs=target.ca)
            except (OSError, ValueError) as e:
                raise MqttError(f"--mqtt {target.display}: TLS: {e}") from None
        client.max_queued_messages_set(queue)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.will_set(f"{target.prefix}/status", "offline", qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        self._connect(timeout_s)

    @classmethod
    def from_url(cls, url: str, source: str, regions: list[Any] = (), queue: int | None = None,
                 **kw: Any) -> "MqttSink":
        """The sink for `--mqtt URL` (`queue`: `--mqtt-queue`, None for the default)."""
        lines = [r.name for r in regions if r.kind == "line"]
        zones = [r.name for r in regions if r.kind == "zone"]
        return cls(parse_url(url), source, lines, zones, queue=queue or QUEUE, **kw)

    # -- connection

    def _connect(self, timeout_s: float) -> None:
        where = f"--mqtt {self.target.display}"
        try:
            self._client.connect(self.target.host, self.target.port, keepalive=30)
        except OSError as e:
            raise MqttError(f"{where}: cannot connect: {e.strerror or e}") from None
        self._client.loop_start()
        if not self._connected.wait(timeout_s) or self._refused:
            why = self._refused or f"no answer within {timeout_s:g} s"
            self._client.loop_stop()
            self._client.disconnect()
            raise MqttError(f"{where}: the broker refused the connection: {why}")
        log.info("mqtt: publishing to %s", self.target.display)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                    properties: Any = None) -> None:
        if reason.is_failure:
            self._refused = str(reason)
            client.disconnect()  # no retrying with credentials the broker refused
            self._connected.set()
            return
        client.publish(f"{self.target.prefix}/status", "online", qos=1, retain=True)
        if self._discovery:
            client.subscribe(f"{self.target.discovery}/status", qos=1)
            self._announce()
        with self._lock:
            counts = self._last_counts
        if counts is not None:
            client.publish(f"{self.target.prefix}/counts", counts, qos=1, retain=True)
        self._connected.set()

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any,
                       properties: Any = None) -> None:
        if self._connected.is_set() and not self._refused:
            log.info("mqtt: %s: disconnected (%s); queueing, reconnecting",
                     self.target.display, reason)

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        if message.topic == f"{self.target.discovery}/status" and message.payload == b"online":
            self._announce()  # Home Assistant restarted: it wants the configs again

    def _announce(self) -> None:
        for topic, config in self._discovery.items():
            self._client.publish(topic, json.dumps(config), qos=1, retain=True)

    # -- the event sink

    def _publish(self, topic: str, payload: bytes | str, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        from paho.mqtt.client import MQTT_ERR_QUEUE_SIZE
        with self._lock:
            if info.rc == MQTT_ERR_QUEUE_SIZE:
                self.dropped += 1
            else:
                self.published += 1

    def write(self, event: dict[str, Any], snapshot: Callable[[], bytes]) -> None:
        self._publish(f"{self.target.prefix}/event", json.dumps(event))
        jpeg = snapshot()
        if jpeg:
            self._publish(f"{self.target.prefix}/snapshot/{event['id']}", jpeg)

    def counts(self, counts: dict[str, Any]) -> None:
        payload = json.dumps(counts).encode()
        with self._lock:
            self._last_counts = payload
        self._publish(f"{self.target.prefix}/counts", payload, retain=True)

    def pending(self) -> int:
        """Messages not yet acknowledged by the broker."""
        return len(self._client._out_messages)  # paho has no public accessor for this

    def close(self, complete: bool = True, drain_s: float = 5.0) -> None:
        """Wait up to `drain_s` for the broker to acknowledge what is queued, then leave
        (saying `offline` ourselves: a clean exit sends no will)."""
        if self._client is None:
            return
        deadline = time.monotonic() + drain_s
        while self.pending() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.unacknowledged = self.pending()
        if self._client.is_connected():
            info = self._client.publish(f"{self.target.prefix}/status", "offline", qos=1,
                                        retain=True)
            try:
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        self._client = None

    def report(self) -> str | None:
        """The line for the run's end: what was published, dropped, left unacknowledged."""
        text = (f"mqtt {self.target.display}: {self.published} messages published, "
                f"{self.dropped} dropped (queue full while the broker was away)")
        if self.unacknowledged:
            text += f", {self.unacknowledged} not acknowledged by the broker at exit"
        return text
