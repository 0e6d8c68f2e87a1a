"""The OpenRPC document ``rpc.discover`` serves: valid against the OpenRPC meta-schema, and in
agreement with the method table and with docs/protocol.md."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema

from tests.conftest import require
from tradews.app.openrpc import NOTIFICATIONS, openrpc_document
from tradews.session.session import METHODS

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "docs" / "protocol.md"
META_SCHEMA = ROOT / "node_modules" / "@open-rpc" / "meta-schema"


def _meta_schema() -> dict[str, Any]:
    require(
        shutil.which("node") is not None and META_SCHEMA.is_dir(),
        "node and the npm package @open-rpc/meta-schema are needed (run `make test`)",
    )
    done = subprocess.run(
        ["node", "-e", "process.stdout.write(JSON.stringify("
         "require('@open-rpc/meta-schema').openrpcDocument))"],
        capture_output=True, text=True, timeout=30, cwd=ROOT, check=True,
    )  # fmt: skip
    schema: dict[str, Any] = json.loads(done.stdout)
    # Its schemas are JSON Schema, which it names by an address this machine may not reach:
    # check them against the draft-07 meta-schema that jsonschema carries.
    assert schema["definitions"]["JSONSchema"] == {"$ref": "https://meta.json-schema.tools"}
    schema["definitions"]["JSONSchema"] = {"$ref": "http://json-schema.org/draft-07/schema#"}
    return schema


def test_the_document_is_valid_openrpc() -> None:
    schema = _meta_schema()
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(openrpc_document())]  # fmt: skip
    assert not errors


def test_the_meta_schema_catches_a_broken_document() -> None:
    """The check above can fail: a method without a result is not OpenRPC."""
    broken = json.loads(json.dumps(openrpc_document()))
    del broken["methods"][0]["result"]
    broken["methods"][1]["name"] = 42
    errors = list(jsonschema.Draft7Validator(_meta_schema()).iter_errors(broken))
    assert errors


def test_every_method_and_every_push_is_described() -> None:
    doc = openrpc_document()
    assert [m["name"] for m in doc["methods"]] == list(METHODS)
    assert [n["name"] for n in doc["x-notifications"]] == list(NOTIFICATIONS)
    schemas = doc["components"]["schemas"]
    for note in doc["x-notifications"]:
        name = note["params"]["$ref"].rsplit("/", 1)[-1]
        assert name in schemas, note["name"]


def test_the_protocol_doc_lists_exactly_the_methods_the_server_has() -> None:
    text = PROTOCOL.read_text()
    table = text[text.index("## Methods") :]
    table = table[: table.index("\n\n", table.index("| method |"))]
    documented = re.findall(r"^\| `([\w.]+)` \|", table, flags=re.MULTILINE)
    assert sorted(documented) == sorted(METHODS)


def test_the_protocol_doc_names_every_push() -> None:
    text = PROTOCOL.read_text()
    streams = text[text.index("### Streams") :]
    streams = streams[: streams.index("\n\n", streams.index("| channel |"))]
    in_table = {n for cell in re.findall(r"^\| `[^`]+` \| ([^|]+) \|", streams, re.MULTILINE)
                for n in re.findall(r"`(\w+)`", cell)}  # fmt: skip
    headed = set(re.findall(r"^### .*the `(\w+)` notification", text, flags=re.MULTILINE))
    warned = {"warning"} if "`warning` notification" in text else set()
    assert in_table | headed | warned == set(NOTIFICATIONS)
