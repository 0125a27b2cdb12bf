"""Regenerates the gRPC stubs in ``bifrost_client/_proto`` from ``proto/proto/bifrost.proto``.

Run from anywhere with the pinned ``grpcio-tools``::

    python python/tools/gen_proto.py            # rewrite the committed stubs
    python python/tools/gen_proto.py --out DIR  # write them elsewhere (the stub test diffs DIR)

protoc writes ``import bifrost_pb2`` in the service module; it is rewritten to a
package-relative import so the stubs work inside ``bifrost_client._proto``.
Only the public service (``bifrost.v1.Bifrost``) is generated.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO_DIR = REPO / "proto" / "proto"
PROTO = "bifrost.proto"
DEFAULT_OUT = REPO / "python" / "bifrost_client" / "_proto"
GENERATED = ("bifrost_pb2.py", "bifrost_pb2.pyi", "bifrost_pb2_grpc.py")


def generate(out: Path) -> list[Path]:
    """Writes the three generated files into ``out``; returns their paths."""
    from grpc_tools import protoc  # imported here: only the generator needs grpcio-tools

    out.mkdir(parents=True, exist_ok=True)
    include = Path(protoc.__file__).parent / "_proto"
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{include}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        PROTO,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {PROTO_DIR / PROTO}")
    _make_relative(out / "bifrost_pb2_grpc.py")
    return [out / name for name in GENERATED]


def _make_relative(path: Path) -> None:
    """``import bifrost_pb2 as x`` -> ``from . import bifrost_pb2 as x``."""
    text = path.read_text()
    fixed, n = re.subn(r"^import bifrost_pb2 as ", "from . import bifrost_pb2 as ", text, flags=re.M)
    if n != 1:
        raise SystemExit(f"{path}: expected one 'import bifrost_pb2' line, found {n}")
    path.write_text(fixed)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    for p in generate(args.out):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
