"""The committed protobuf code is what `make proto` generates from the committed schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "src" / "tradews" / "codecs" / "pb"


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT / 'proto' / 'tradews' / 'v1'}",
            f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
            str(ROOT / "proto" / "tradews" / "v1" / "tradews.proto"),
        ],
        check=True,
    )  # fmt: skip
    for name in ("tradews_pb2.py", "tradews_pb2.pyi"):
        fresh = (tmp_path / name).read_text()
        committed = (GENERATED / name).read_text()
        assert committed == fresh, f"{name} is stale: run `make proto` and commit the result"


def test_published_envelope_numbers_never_change() -> None:
    from tradews.codecs.pb import tradews_pb2 as pb

    client = pb.ClientMessage.DESCRIPTOR.fields_by_name
    server = pb.ServerMessage.DESCRIPTOR.fields_by_name
    assert client["subscribe"].number == 1 and client["order"].number == 2
    assert server["market_data"].number == 1 and server["order_response"].number == 2
    assert client["subscribe"].message_type.name == "SubscribeRequest"
    assert client["order"].message_type.name == "OrderRequest"
    assert server["market_data"].message_type.name == "MarketUpdate"
    assert server["order_response"].message_type.name == "OrderResponse"
