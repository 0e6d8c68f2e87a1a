"""docs/asyncapi.json: generated from the message types, up to date, and valid AsyncAPI 3."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from tests.conftest import require
from tradews.app.asyncapi import STREAMS, asyncapi_document, render
from tradews.app.openrpc import NOTIFICATIONS

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.json"
SPEC = ROOT / "node_modules" / "@asyncapi" / "specs" / "schemas" / "3.0.0-without-$id.json"


def test_the_committed_document_is_up_to_date() -> None:
    assert COMMITTED.read_text() == render(), "run `make docs`"


def test_it_is_valid_asyncapi_3() -> None:
    require(SPEC.is_file(), "the npm package @asyncapi/specs is needed (run `make test`)")
    validator = jsonschema.Draft7Validator(json.loads(SPEC.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(asyncapi_document())]  # fmt: skip
    assert not errors
    broken = json.loads(json.dumps(asyncapi_document()))
    broken["operations"]["send_book"]["action"] = "publish"  # AsyncAPI 2's word, not 3's
    assert list(validator.iter_errors(broken))


def test_every_push_is_on_a_stream() -> None:
    on_streams = [n for _, _, notes in STREAMS.values() for n in notes]
    assert sorted(on_streams) == sorted(NOTIFICATIONS)
