"""W&B runs: starting an online run that cannot hang the pipeline; reading offline runs back.

Online (logger.mode=online):

``wandb.init(mode="online")`` waits for its service, which waits for the server; a server that
accepts the connection but never answers held it past 300 s, whatever ``init_timeout`` said, and
a stuck init blocks every later W&B call of the process, exit included. So:

1. one HTTP request to the server (``WANDB_BASE_URL``, else api.wandb.ai) must be answered within
   ``logger.init_timeout_s``, otherwise W&B is not touched and the run is logged offline;
2. the online init then runs in a thread with what is left of that deadline; if it has not
   returned by then, the W&B service process it waits on is stopped (the next init starts a
   fresh one) and the run is logged offline.

Either way one warning line says so and where the offline run is (``wandb sync`` uploads it).

Offline: `read_offline_run` reads a run folder (``<logger.dir>/wandb/offline-run-*``) back: its
name, group, job type, tags, config and every logged row, e.g. to check that a sweep's runs hold
per-step curves of every loss term without uploading them.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)


def base_url() -> str:
    return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").rstrip("/")


def server_answers(url: str, timeout_s: float) -> tuple[bool, str]:
    """Whether an HTTP server at `url` answers a request within `timeout_s` (and why not)."""
    body = b'{"query": "{ serverInfo { cliVersionInfo } }"}'
    req = urllib.request.Request(
        f"{url}/graphql", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout_s):
            return True, ""
    except urllib.error.HTTPError:  # 4xx/5xx: the server is there; wandb reports the error
        return True, ""
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        return False, str(reason) or type(reason).__name__


def init_online(kwargs: dict, timeout_s: float):
    """``wandb.init(mode="online", **kwargs)`` within `timeout_s`, or None (then log offline)."""
    import wandb

    url, deadline = base_url(), time.monotonic() + timeout_s
    ok, why = server_answers(url, timeout_s)
    where = f"logging offline to {kwargs.get('dir')} (upload later with `wandb sync`)"
    if not ok:
        log.warning(
            "W&B server %s did not answer within %.0f s (%s); %s", url, timeout_s, why, where
        )
        return None
    box: dict = {}

    def target() -> None:
        try:
            box["run"] = wandb.init(
                mode="online", settings=wandb.Settings(init_timeout=timeout_s), **kwargs
            )
        except BaseException as e:  # noqa: BLE001  network or auth failure: keep the run, locally
            box["error"] = e

    thread = threading.Thread(target=target, name="wandb-online-init", daemon=True)
    thread.start()
    thread.join(max(deadline - time.monotonic(), 1.0))
    if thread.is_alive():
        _stop_service()
        log.warning("W&B online init did not finish within %.0f s; %s", timeout_s, where)
        return None
    if "error" in box:
        log.warning("W&B online init failed (%s); %s", box["error"], where)
        return None
    return box["run"]


def _stop_service() -> None:
    """Stop the W&B service process a stuck init waits on, so later runs get a fresh one.

    Relies on wandb's internals (pinned to <= 0.28 in pyproject.toml); if they differ, later W&B
    calls of this process may block, which the warning before this call already explains.
    """
    try:
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib.service import service_token

        with wandb_setup._singleton_lock:
            setup, wandb_setup._singleton = wandb_setup._singleton, None
        conn = setup._connection if setup is not None else None
        service_token.clear_service_in_env()
        if conn is None:
            return
        if conn._cleanup:  # its exit hook would wait for the stuck service
            conn._cleanup()
        proc = conn._proc._process if conn._proc is not None else None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
    except Exception as e:  # noqa: BLE001
        log.debug("could not stop the W&B service: %s", e)


@dataclass
class OfflineRun:
    """What an offline W&B run holds (see `read_offline_run`)."""

    name: str
    group: str
    job_type: str
    tags: list[str]
    config: dict = field(default_factory=dict)  # top-level config keys, values decoded
    history: list[dict] = field(default_factory=list)  # logged rows, in order

    def series(self, key: str) -> list:
        """The values of metric `key` over the rows that logged it."""
        return [row[key] for row in self.history if key in row]


def read_offline_run(folder: Path | str, wait_s: float = 30.0) -> OfflineRun:
    """Read an offline run folder (``.../wandb/offline-run-<time>-<id>``) with wandb's reader.

    W&B's service writes the file after ``run.finish()`` returns, so a run without its closing
    record, or one whose last record is still half written (wandb's reader then fails its
    checksum assertion), is read again until it is whole or `wait_s` has passed (then what is
    there, or the reader's error).
    """
    deadline = time.monotonic() + wait_s
    while True:
        try:
            run, complete = _scan(folder)
        except AssertionError:  # a torn record at the end: the service is still writing
            if time.monotonic() > deadline:
                raise
            complete = False
        else:
            if complete or time.monotonic() > deadline:
                return run
        time.sleep(0.2)


def _scan(folder: Path | str) -> tuple[OfflineRun, bool]:
    from wandb.proto import wandb_internal_pb2 as pb
    from wandb.sdk.internal import datastore

    (path,) = Path(folder).glob("run-*.wandb")
    store = datastore.DataStore()
    store.open_for_scan(str(path))
    run, complete = OfflineRun("", "", "", []), False
    while (data := store.scan_data()) is not None:
        rec = pb.Record()  # type: ignore[attr-defined]  # protobuf-generated, not in the stubs
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run  # the first record has them all; later ones only what changed
            run.name, run.group = r.display_name or run.name, r.run_group or run.group
            run.job_type, run.tags = r.job_type or run.job_type, list(r.tags) or run.tags
            run.config.update({i.key: json.loads(i.value_json) for i in r.config.update})
        elif kind == "config":
            run.config.update({i.key: json.loads(i.value_json) for i in rec.config.update})
        elif kind == "history":
            items = rec.history.item
            run.history.append(
                {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
            )
        complete |= kind == "exit"
    return run, complete
