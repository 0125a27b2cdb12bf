"""The committed stubs are exactly what grpcio-tools makes of proto/proto/bifrost.proto."""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parents[1]
COMMITTED = PYTHON_DIR / "bifrost_client" / "_proto"


def test_committed_stubs_match_the_proto(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(PYTHON_DIR / "tools" / "gen_proto.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for fresh in sorted(tmp_path.iterdir()):
        old = COMMITTED / fresh.name
        assert old.exists(), f"{old} missing: run python python/tools/gen_proto.py"
        if old.read_bytes() != fresh.read_bytes():
            diff = difflib.unified_diff(
                old.read_text().splitlines(), fresh.read_text().splitlines(), str(old), "regenerated", lineterm=""
            )
            raise AssertionError(
                f"{old.name} is stale: run python python/tools/gen_proto.py\n" + "\n".join(list(diff)[:40])
            )
