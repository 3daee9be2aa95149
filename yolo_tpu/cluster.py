"""`batch --scheduler tcp://HOST:PORT`: the videos of a batch on the workers of a Dask cluster.

One task per video runs `batch.process` on a worker, which keeps one Detector per thread for
the model and settings asked for; the outputs go to the `--out` folder every worker sees,
under the same hidden partial names renamed when complete, so the guarantees of a local batch
hold: a worker killed mid-video leaves only a partial file, Dask gives its task to another
worker (whose `process` first removes the leftovers), and each input ends with exactly one
complete set of outputs.

Devices are Dask worker resources: a compiled model, or `--device tpu|usb|pci...`, asks
for `EDGETPU=1`, so it runs only on workers started with `--resources EDGETPU=1` (one per
Edge TPU; `YOLO_TPU_DEVICE=usb:1` in a worker's environment says which one). Anything else
is CPU work, which any worker takes. A worker that cannot load the model (the file is not
there, no TPU answers) says so in one line and gets no more videos; the others go on. A lost
scheduler ends the batch with one line; every completed output stays. A write error on a
worker (the shared disk full) stops the batch as it stops a local one: the videos not
started are cancelled, and the batch ends with the one line of the local batch.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from concurrent.futures import CancelledError
from typing import Any

log = logging.getLogger("yolo_tpu")
DEVICE_ENV = "YOLO_TPU_DEVICE"
TPU_RESOURCE = "EDGETPU"
CONNECT_TIMEOUT_S = 5
STOP_WAIT_S = 60  # after a write failed, how long running videos get to stop and clean up

_local = threading.local()  # per worker thread: {settings key: Detector}


class WorkerUnfit(RuntimeError):
    """This worker cannot run the model (file missing, no TPU): try the others."""

    def __init__(self, worker: str, problem: str):
        super().__init__(worker, problem)  # in args: survives the trip back to the client
        self.worker, self.problem = worker, problem

    def __str__(self) -> str:
        return f"worker {self.worker}: {self.problem}"


def settings(args: argparse.Namespace) -> dict[str, Any]:
    """What a worker needs to build the same Detector and run the same loop."""
    return {"model": args.model, "device": args.device, "conf": args.conf, "iou": args.iou,
            "max_det": args.max_det, "every": args.every}


def _detector(s: dict[str, Any]):
    """This thread's Detector for these settings (loaded once, reused for every video)."""
    from .backends import BackendError
    from .detector import Detector, ModelError
    device = os.environ.get(DEVICE_ENV) or s["device"]
    key = (s["model"], device, s["conf"], s["iou"], s["max_det"])
    cache = getattr(_local, "detectors", None)
    if cache is None:
        cache = _local.detectors = {}
    if key not in cache:
        try:
            cache[key] = Detector(s["model"], device=device, conf=s["conf"], iou=s["iou"],
                                  max_det=s["max_det"])
        except (ModelError, BackendError, ValueError) as e:
            raise WorkerUnfit(_worker_address(), str(e)) from None
    return cache[key]


def _worker_address() -> str:
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return "local"


def _watch_stop(name: str, stop: threading.Event, done: threading.Event) -> None:
    """Set `stop` when the batch sets the cluster-wide Event `name` (a write failed
    elsewhere), so a video in progress ends here, its partial outputs removed."""
    try:
        from distributed import Event
        flag = Event(name)
    except (ImportError, ValueError):  # not on a worker (a local call)
        return

    def watch() -> None:
        while not done.is_set():
            try:
                if flag.wait(timeout=0.5):
                    stop.set()
                    return
            except Exception:  # noqa: BLE001 - the scheduler went away: the task ends anyway
                return

    threading.Thread(target=watch, name="yolo_tpu-stop-watch", daemon=True).start()


def video_task(job, s: dict[str, Any], stop_name: str | None = None) -> dict[str, Any]:
    """Run on a worker: one video into its outputs; the batch record (`worker` added)."""
    from tqdm import tqdm

    from .jobs import process
    stop, done = threading.Event(), threading.Event()
    if stop_name:
        _watch_stop(stop_name, stop, done)
    try:
        detector = _detector(s)
        with tqdm(disable=True) as overall:
            # A task of a lost scheduler may still run while a resumed batch redoes its
            # video: partial names of their own, so neither renames the other's file.
            record = process(detector, job, s["every"], stop, overall,
                             tag=os.urandom(4).hex())
    finally:
        done.set()
    return {**record, "worker": _worker_address()}


def needs_tpu(args: argparse.Namespace) -> bool:
    """Whether the videos must go to workers with an Edge TPU."""
    from .backends import parse_device
    from .detector import ModelError, read_model_info
    from .pipeline import model_paths
    if parse_device(args.device.split(",")[0]).kind == "tpu":
        return True
    if args.device != "auto":
        return False
    try:
        return read_model_info(model_paths(args.model)[-1])[1]
    except ModelError:
        return False  # not readable here: the workers will say why


def scheduler_problem(address: str) -> str | None:
    """What is wrong with a scheduler address before Dask tries it (Dask's own Client,
    given a malformed one, fails and then leaves a traceback behind at exit)."""
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError as e:
        return f"not an address: {e}"
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None:
        return "not an address: give it as tcp://HOST:PORT (e.g. tcp://127.0.0.1:8786)"
    return None


def _cancel(client: Any, futures: list) -> None:
    """Cancel the videos not done (one running on a worker ends there, whole or removed)."""
    try:
        client.cancel(futures)
    except Exception:  # noqa: BLE001 - the client may be closing already
        pass


def _stop_running(client: Any, stop_name: str, futures: list) -> None:
    """After a write failed: cancel what has not started, tell the videos running on
    workers to stop, and wait (bounded) for them to end, their partial outputs removed,
    so that nothing writes into --out once the batch has let go of its lock."""
    from distributed import Event, wait
    try:
        with client.as_current():  # the batch's client is not the default one
            Event(stop_name, client=client).set()
            wait(futures, timeout=STOP_WAIT_S)
    except Exception:  # noqa: BLE001 - timeout or the scheduler gone: cancel what is left
        pass
    _cancel(client, futures)


def run_on_cluster(args: argparse.Namespace, jobs: list, todo: list,
                   records: list[dict[str, Any]], missing: list, stop, overall,
                   write_failed: list | None = None) -> str | None:
    """Submit the videos to do, collect their records as they finish (the summary rewritten
    after each). None when every video came back or a write failed (the OutputError, a
    worker's or the summary's, then goes to `write_failed` and the rest is cancelled); else
    why the batch ended early: "unreachable" (nothing ran, the error is printed), or the
    lost-scheduler message."""
    from .cli import error
    from .jobs import write_summary
    from .outputs import OutputError
    write_failed = [] if write_failed is None else write_failed
    try:
        from distributed import Client, as_completed
    except ImportError:
        error("--scheduler needs dask.distributed: pip install 'yolo_tpu[cluster]'")
        return "unreachable"
    # Dask logs a lost connection as tracebacks; the batch says it in one line of its own.
    for name in ["distributed", *[n for n in logging.root.manager.loggerDict
                                  if n.startswith("distributed.")]]:
        logging.getLogger(name).setLevel(logging.CRITICAL)
    if problem := scheduler_problem(args.scheduler):
        error(f"--scheduler {args.scheduler}: {problem}")
        return "unreachable"
    try:
        client = Client(args.scheduler, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        error(f"--scheduler {args.scheduler}: cannot connect ({e})")
        return "unreachable"
    s = settings(args)
    resources = {TPU_RESOURCE: 1} if needs_tpu(args) else None
    unfit: set[str] = set()
    futures: dict[Any, int] = {}
    stop_name = f"yolo_tpu-stop-{os.urandom(4).hex()}"  # set when a write fails

    def submit(i: int, workers: list[str] | None = None):
        job = jobs[i]
        future = client.submit(video_task, job, s, stop_name, pure=False, resources=resources,
                               key=f"yolo_tpu-{job.stem}-{os.urandom(4).hex()}",
                               workers=workers, allow_other_workers=False)
        futures[future] = i
        return future

    def able() -> list[str]:
        """Workers that may take these videos: not known unfit, with a TPU if needed."""
        workers = client.scheduler_info().get("workers", {})
        return [w for w, info in workers.items() if w not in unfit
                and (not resources or (info.get("resources") or {}).get(TPU_RESOURCE))]

    if not able():
        error(f"--scheduler {args.scheduler}: no worker " + (
            f"declares {TPU_RESOURCE} (start one per Edge TPU with `dask worker ADDRESS "
            f"--resources {TPU_RESOURCE}=1`)" if resources else "connected"))
        client.close()
        return "unreachable"
    log.info("%s: %d videos to %d workers%s", args.scheduler, len(todo), len(able()),
             f" with {TPU_RESOURCE}" if resources else "")
    def cancel_on_stop() -> None:
        """Ctrl-C / SIGTERM: cancel what has not run (a video already running on a worker
        ends there, complete; --resume counts it)."""
        stop.wait()
        _cancel(client, list(futures))

    threading.Thread(target=cancel_on_stop, name="yolo_tpu-cancel", daemon=True).start()
    lost = None
    try:
        pending = as_completed([submit(i) for i, job in enumerate(jobs) if job in todo],
                               loop=client.loop)
        for future in pending:
            if stop.is_set():
                break
            i = futures.pop(future)
            if future.status == "finished":
                record = future.result()  # fetched from the worker: may raise a comm error
            elif future.status != "error":  # cancelled, lost: the scheduler is gone
                raise CancelledError(future.status)
            elif isinstance(e := future.exception(), OutputError):
                write_failed.append(e)  # a full disk: every further video would fail too
                break
            elif isinstance(e, WorkerUnfit):
                if e.worker not in unfit:
                    overall.write(f"yolo_tpu: {e}; its videos go to the other workers",
                                  file=sys.stderr)
                unfit.add(e.worker)
                others = able()
                if others:
                    pending.add(submit(i, others))
                    continue
                record = {"input": jobs[i].source, "outputs": [], "status": "failed",
                          "error": f"{jobs[i].source}: no worker can run the model ({e})",
                          "frames": 0}
            else:  # the task itself raised (KilledWorker: it took down every worker it met)
                record = {"input": jobs[i].source, "outputs": [], "status": "failed",
                          "error": f"{jobs[i].source}: {type(e).__name__}: {e}", "frames": 0}
            records[i] = record
            overall.update(record.get("frames") or 0)
            if record["status"] == "failed":
                overall.write(f"error: {record['error']}", file=sys.stderr)
            try:
                write_summary(args.out, records, args, missing)
            except OutputError as e:
                write_failed.append(e)
                break
        if write_failed:
            _stop_running(client, stop_name, list(futures))
    except (OSError, TimeoutError, CancelledError) as e:  # the scheduler went away
        if stop.is_set():
            return None  # our own cancel on Ctrl-C / SIGTERM
        done = sum(1 for job in jobs if job.done())  # on disk: some finished unreported
        lost = (f"--scheduler {args.scheduler}: lost the scheduler ({type(e).__name__}); "
                f"{done} of {len(jobs)} videos done and kept; run again with --resume")
    finally:
        try:
            client.close(timeout=2)
        except Exception:  # noqa: BLE001 - closing a client whose scheduler is gone
            pass
    return lost


