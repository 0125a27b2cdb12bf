"""``cutover`` and ``rollback``: who polls the devices, moved with an overlap so no gap appears.

``cutover``: Bifrost starts polling the gateway's devices (they were imported
disabled, see ``config --disabled``); once it has polled a good reading of every
tag itself (else it stops again, and what it polled is copied to the gateway),
both poll for the overlap window; then the gateway stops polling them (its
``POST /polling``) and the dual-write plug-in's last readings reach Bifrost. The
step then checks Bifrost's history over the whole switch: no tag silent for longer
than ``--max-gap``, no counter (``--counter``) missing a number.

``rollback`` is the reverse: the gateway polls again, both overlap, Bifrost stops;
then Bifrost's readings since the cutover are copied into the gateway's store
(under the gateway's own ids, so what it has is not stored twice) and the store is
checked the same way.

Both record each switch in a state file (``--state``) as they make it, which is
how ``rollback`` knows where the window it copies begins and a second ``cutover``
knows to refuse. Must not depend on the gateway's code:
it talks to the gateway over its HTTP API and to its store file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

from .. import types as t
from ..client import Client
from .document import clean_name
from .sides import GatewayStore, Row, bifrost_rows, client_from, comparable, fmt_us, micros, now_us, parse_time
from .sides import seconds
from .verify import counter_gaps, gaps, parse_counter


class GatewayApi:
    """The gateway's HTTP API (``examples/python-gateway``): health and the polling switch."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url, self.timeout = url.rstrip("/"), timeout
        if "://" not in self.url:
            self.url = "http://" + self.url

    def _call(self, method: str, path: str, body: Optional[dict[str, Any]] = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"gateway {self.url}{path}: HTTP {e.code}: {e.read().decode(errors='replace')}") \
                from None
        except (urllib.error.URLError, OSError) as e:
            raise RuntimeError(f"gateway {self.url}{path}: {e}") from None

    def devices(self) -> dict[str, dict[str, Any]]:
        return dict(self._call("GET", "/health")["devices"])

    def set_polling(self, devices: list[str], enabled: bool) -> None:
        self._call("POST", "/polling", {"devices": devices, "enabled": enabled})


INT_TYPES = ("i16", "u16", "i32", "u32", "i64")


class Plan:
    """The devices a step moves: gateway names, Bifrost devices, their tags."""

    def __init__(self, client: Client, api: GatewayApi, wanted: list[str]) -> None:
        known = api.devices()
        names = wanted or sorted(known)
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"the gateway has no device {', '.join(unknown)} (it has {', '.join(sorted(known))})")
        bifrost = {d.name: d for d in client.list_devices()}
        missing = [n for n in names if clean_name(n) not in bifrost]
        if missing:
            raise ValueError(f"Bifrost has no device for {', '.join(missing)}: import the document of "
                             "`bifrost-migrate config gateway` first")
        self.gateway_devices = names
        self.devices = [bifrost[clean_name(n)] for n in names]
        tags = [tg for d in self.devices for tg in client.list_tags(device=d.name)]
        if not tags:
            raise ValueError(f"Bifrost has no tags on {', '.join(d.name for d in self.devices)}")
        self.tags = sorted(tg.name for tg in tags)
        self.bool_tags = {tg.name for tg in tags if tg.data_type == "bool"}
        self.int_tags = {tg.name for tg in tags if tg.data_type in INT_TYPES and not tg.HasField("scale")}
        self.interval_us = max(d.poll_interval_ms for d in self.devices) * 1000

    def set_bifrost_polling(self, client: Client, enabled: bool) -> None:
        for i, d in enumerate(self.devices):
            if d.enabled != enabled:
                d.enabled = enabled
                self.devices[i] = client.put_device(d, expected_revision=d.revision)


def wait_until(what: str, timeout: float, check: Callable[[], list[str]]) -> None:
    """Polls ``check`` (what is still missing) until it returns nothing; ``TimeoutError`` names the rest."""
    end = time.monotonic() + timeout
    while True:
        missing = check()
        if not missing:
            return
        if time.monotonic() >= end:
            raise TimeoutError(f"{what} within {timeout:.0f}s; still missing: {', '.join(missing[:10])}"
                               + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
        time.sleep(0.2)


def polled_by_bifrost(client: Client, tags: list[str], since_us: int) -> list[str]:
    """Tags without a good reading Bifrost polled itself since ``since_us`` (the gateway's
    dual-written ones, ids ``gw:...``, do not count)."""
    got = {r.tag for r in bifrost_rows(client, tags, since_us, now_us() + 1)
           if r.quality == "good" and not r.id.startswith("gw:")}
    return [tg for tg in tags if tg not in got]


def fresh_in_store(store: GatewayStore, tags: list[str], since_us: int) -> list[str]:
    latest = store.latest(tags)
    return [tg for tg in tags if tg not in latest or latest[tg].ts_us < since_us or latest[tg].quality != "good"]


def in_bifrost(client: Client, rows: list[Row]) -> list[str]:
    """Those of ``rows`` (one per tag) Bifrost does not have yet."""
    out = []
    for r in rows:
        got = client.history(r.tag, t.us_to_ts(r.ts_us), t.us_to_ts(r.ts_us + 1))
        if not any(comparable(x.value) == r.value for x in got):
            out.append(f"{r.tag}@{fmt_us(r.ts_us)}")
    return out


def counters_of(args: argparse.Namespace, plan: Plan) -> dict[str, float]:
    counters = dict(parse_counter(c) for c in args.counter)
    unknown = [c for c in counters if c not in plan.tags]
    if unknown:
        raise ValueError(f"--counter {', '.join(unknown)}: not a tag of the devices moved")
    return counters


def check_window(rows: list[Row], plan: Plan, args: argparse.Namespace, start_us: int, end_us: int,
                 where: str) -> bool:
    max_gap = args.max_gap_us if args.max_gap_us is not None else 3 * plan.interval_us + 1_000_000
    found = gaps(rows, plan.tags, start_us, end_us, max_gap)
    jumps = counter_gaps(rows, counters_of(args, plan))
    print(f"{where}, {fmt_us(start_us)} to {fmt_us(end_us)}: {len(rows)} readings of {len(plan.tags)} tags, "
          f"{len(found)} gaps over {max_gap / 1e6:.1f}s, {len(jumps)} counter gaps")
    for g in found:
        print(f"  gap: {g.tag}: no reading for {g.seconds:.1f}s after {fmt_us(g.after_us)}")
    for j in jumps:
        if j.after != j.after:  # NaN: too few values
            print(f"  counter gap: {j.tag}: fewer than two good values, nothing to check")
        else:
            print(f"  counter gap: {j.tag}: {j.after:g} then {j.next:g}")
    return not found and not jumps


def load_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"state file {path}: {e}") from None
    if not isinstance(state, dict):
        raise ValueError(f"state file {path}: not a JSON object")
    return state


def save_state(path: Path, **fields: Any) -> None:
    """Adds ``fields`` to the state file, atomically (a crash leaves the old or the new one)."""
    state = {**load_state(path), **fields}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def who_polls(bifrost: bool, gateway: bool) -> str:
    both = {(True, True): "both Bifrost and the gateway poll", (True, False): "Bifrost polls, the gateway does not",
            (False, True): "the gateway polls, Bifrost does not", (False, False): "neither polls"}
    return both[(bifrost, gateway)]


def run_cutover(args: argparse.Namespace) -> int:
    api, state_file = GatewayApi(args.gateway), Path(args.state)
    state = load_state(state_file)
    phase = str(state.get("phase", ""))
    if phase.startswith("cutover") and phase != "cutover abandoned":
        raise ValueError(f"{state_file}: a cutover began at {fmt_us(state['cutover_started_us'])} and was not "
                         "rolled back; run rollback first (or remove the file if that is wrong)")
    with client_from(args) as client, GatewayStore(args.store, writable=True) as store:
        plan = Plan(client, api, args.device)
        counters_of(args, plan)
        polling = [False, True]  # Bifrost, the gateway
        try:
            return _cutover(args, client, api, store, plan, state_file, polling)
        except BaseException as e:
            print(f"bifrost-migrate cutover: stopped half way ({type(e).__name__}): {who_polls(*polling)}; "
                  f"state in {state_file}", file=sys.stderr)
            raise


def _cutover(args: argparse.Namespace, client: Client, api: GatewayApi, store: GatewayStore, plan: Plan,
             state_file: Path, polling: list[bool]) -> int:
    start = now_us()
    print(f"cutover of {', '.join(plan.gateway_devices)} ({len(plan.tags)} tags): Bifrost starts polling")
    plan.set_bifrost_polling(client, True)
    polling[0] = True
    save_state(state_file, phase="cutover: both poll", devices=plan.gateway_devices, cutover_started_us=start,
               clean=None)
    try:
        wait_until("a good reading of every tag polled by Bifrost", args.ready_timeout,
                   lambda: polled_by_bifrost(client, plan.tags, start))
    except TimeoutError as e:
        plan.set_bifrost_polling(client, False)
        polling[0] = False
        # What Bifrost did poll meanwhile goes to the gateway's history too, as in a rollback.
        time.sleep(2 * plan.interval_us / 1e6 + 1)
        copied = store.add(bifrost_rows(client, plan.tags, start, now_us()), plan.bool_tags, plan.int_tags)
        save_state(state_file, phase="cutover abandoned", copied=copied)
        print(f"bifrost-migrate: cutover abandoned, Bifrost stopped again ({copied} readings it polled meanwhile "
              f"copied into {args.store}), the gateway polls on: {e}", file=sys.stderr)
        return 1
    print(f"both poll for {args.overlap:g}s (overlap)")
    time.sleep(args.overlap)
    api.set_polling(plan.gateway_devices, False)
    polling[1] = False
    stopped = now_us()
    save_state(state_file, phase="cutover: Bifrost polls", gateway_stopped_us=stopped)
    print("the gateway stopped polling; waiting for its last readings to reach Bifrost")
    time.sleep(2 * plan.interval_us / 1e6)  # a poll under way when it stopped is stored and sent
    last = list(store.latest(plan.tags).values())
    wait_until("the gateway's last readings in Bifrost (dual-write drained)", args.ready_timeout,
               lambda: in_bifrost(client, last))
    end = now_us()
    ok = check_window(list(bifrost_rows(client, plan.tags, start, end)), plan, args, start, end,
                      "Bifrost's history across the cutover")
    save_state(state_file, phase="cutover", checked_until_us=end, clean=ok)
    print(f"cutover {'done' if ok else 'done, with gaps'}: Bifrost polls; state in {state_file}")
    return 0 if ok else 1


def run_rollback(args: argparse.Namespace) -> int:
    api, state_file = GatewayApi(args.gateway), Path(args.state)
    state = load_state(state_file)
    if args.from_ is not None:
        since = parse_time(args.from_, option="--from")
    elif "cutover_started_us" in state:
        since = int(state["cutover_started_us"])
    else:
        raise ValueError(f"no --from and no cutover recorded in {state_file}: say where the window to copy begins")
    with client_from(args) as client, GatewayStore(args.store, writable=True) as store:
        plan = Plan(client, api, args.device or state.get("devices") or [])
        counters_of(args, plan)
        polling = [any(d.enabled for d in plan.devices), False]
        try:
            return _rollback(args, client, api, store, plan, state_file, since, polling)
        except BaseException as e:
            print(f"bifrost-migrate rollback: stopped half way ({type(e).__name__}): {who_polls(*polling)}; "
                  f"state in {state_file}", file=sys.stderr)
            raise


def _rollback(args: argparse.Namespace, client: Client, api: GatewayApi, store: GatewayStore, plan: Plan,
              state_file: Path, since: int, polling: list[bool]) -> int:
    start = now_us()
    print(f"rollback of {', '.join(plan.gateway_devices)} ({len(plan.tags)} tags): the gateway polls again")
    api.set_polling(plan.gateway_devices, True)
    polling[1] = True
    save_state(state_file, phase="rollback: both poll", devices=plan.gateway_devices, rollback_started_us=start)
    wait_until("a good reading of every tag polled by the gateway", args.ready_timeout,
               lambda: fresh_in_store(store, plan.tags, start))
    print(f"both poll for {args.overlap:g}s (overlap)")
    time.sleep(args.overlap)
    plan.set_bifrost_polling(client, False)
    polling[0] = False
    save_state(state_file, phase="rollback: the gateway polls")
    print("Bifrost stopped polling")
    time.sleep(2 * plan.interval_us / 1e6 + 1)  # its last polls commit
    end = now_us()
    copied = store.add(bifrost_rows(client, plan.tags, since, end), plan.bool_tags, plan.int_tags)
    print(f"copied {copied} readings of Bifrost from {fmt_us(since)} to {fmt_us(end)} into {args.store}")
    ok = check_window(list(store.rows(plan.tags, since, end)), plan, args, since, end,
                      "the gateway's store since the cutover")
    save_state(state_file, phase="rolled back", copied_from_us=since, copied_until_us=end, copied=copied,
               clean=ok)
    print(f"rollback {'done' if ok else 'done, with gaps'}: the gateway polls; state in {state_file}")
    return 0 if ok else 1


def add_switch_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--gateway", required=True, metavar="URL", help="the gateway's HTTP API (http://HOST:PORT)")
    p.add_argument("--store", required=True, help="the gateway's reading store (SQLite)")
    p.add_argument("--device", action="append", default=[], metavar="NAME",
                   help="a gateway device to move (repeatable; default: all)")
    p.add_argument("--overlap", type=seconds, default=30.0, help="seconds both poll (30)")
    p.add_argument("--ready-timeout", type=seconds, default=60.0,
                   help="seconds to wait for the other side's first good readings (60)")
    p.add_argument("--max-gap", dest="max_gap_us", type=micros, default=None,
                   metavar="SECONDS", help="longest silence of a tag's good readings allowed (default 3 poll "
                   "intervals + 1 s)")
    p.add_argument("--counter", action="append", default=[], metavar="TAG[:STEP]",
                   help="a counter tag whose successive values may differ by at most STEP (1): no count lost")
    p.add_argument("--state", default="bifrost-migrate.state.json", help="where the steps record what they did")

