"""``python -m gateway --config FILE --db FILE --http HOST:PORT``: run until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from . import config
from .app import create_app
from .service import Gateway, load_hook
from .store import Store


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="gateway", description=__doc__)
    p.add_argument("--config", required=True, help="YAML file: devices, tags, hooks (see README.md)")
    p.add_argument("--db", required=True, help="SQLite file for readings (created if missing)")
    p.add_argument("--http", default="127.0.0.1:8080", help="HOST:PORT of the HTTP API")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    cfg = config.load(args.config)
    bool_tags = [t.name for t in cfg.tags.values() if t.type == "bool"]
    gw = Gateway(cfg, Store(args.db, bool_tags), [load_hook(h) for h in cfg.hooks])
    host, _, port = args.http.rpartition(":")
    uvicorn.run(create_app(gw), host=host or "127.0.0.1", port=int(port), log_level=args.log_level)


if __name__ == "__main__":
    main()
