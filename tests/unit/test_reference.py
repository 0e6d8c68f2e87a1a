"""docs/reference.md: generated from the code, up to date, and complete: every method has an
example request, every reply and push a documented ServerMessage member, and every example
means what it says in both encodings."""

from __future__ import annotations

import re
from pathlib import Path

import msgspec
from google.protobuf import text_format

from tradews.app.openrpc import NOTIFICATIONS, openrpc_document
from tradews.app.reference import (
    EXAMPLES,
    NOTIFICATION_EXAMPLES,
    PROTO_ALSO,
    PROTO_MESSAGES,
    PUSH_MEMBER,
    REPLY_MEMBER,
    json_request,
    proto_request,
    render,
)
from tradews.codecs.base import Call
from tradews.codecs.jsonrpc import JSON
from tradews.codecs.pb import tradews_pb2 as pb
from tradews.codecs.protobuf import PROTOBUF
from tradews.session.session import METHODS

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "reference.md"


def test_the_committed_reference_is_up_to_date() -> None:
    assert COMMITTED.read_text() == render(), "run `make docs`"


def test_every_method_has_one_example() -> None:
    methods = [e.method for e in EXAMPLES]
    missing = [m for m in METHODS if m not in methods]
    assert not missing, f"no example request for {missing}"
    assert sorted(methods) == sorted(METHODS)  # each once, and no method the server lacks


def test_every_reply_and_push_has_a_documented_member() -> None:
    assert list(REPLY_MEMBER) == list(METHODS)
    assert list(PUSH_MEMBER) == list(NOTIFICATIONS)
    assert list(NOTIFICATION_EXAMPLES) == list(NOTIFICATIONS)
    server = pb.ServerMessage.DESCRIPTOR
    for path in [*filter(None, REPLY_MEMBER.values()), *PUSH_MEMBER.values()]:
        top, _, inner = path.partition(".")
        assert top in server.fields_by_name, path
        if inner:
            assert inner in server.fields_by_name[top].message_type.fields_by_name, path


def test_the_examples_decode_to_their_method_in_both_encodings() -> None:
    for n, example in enumerate(EXAMPLES, 1):
        (call,) = JSON.decode(json_request(example, n).encode(), max_batch=1).items
        assert isinstance(call, Call) and (call.method, call.id) == (example.method, n)
        text = proto_request(example, n)
        if text is None:
            assert REPLY_MEMBER[example.method] is None
            continue
        data = text_format.Parse(text, pb.ClientMessage()).SerializeToString()
        (call,) = PROTOBUF.decode(data, max_batch=1).items
        assert isinstance(call, Call) and (call.method, call.id) == (example.method, n)


def test_the_notification_examples_are_their_types() -> None:
    """Each example converts to the notification's type and back unchanged: no field missing,
    none unknown, every value of its type."""
    for kind, example in NOTIFICATION_EXAMPLES.items():
        struct = msgspec.convert(example, NOTIFICATIONS[kind][0])
        assert msgspec.to_builtins(struct) == example, kind


def test_every_type_names_the_protobuf_message_that_carries_it() -> None:
    schemas = openrpc_document()["components"]["schemas"]
    assert set(schemas) - {"NoParams"} == set(PROTO_MESSAGES)
    for name, other in PROTO_ALSO.items():
        fields = PROTO_MESSAGES[name].fields_by_name
        assert set(getattr(pb, other).DESCRIPTOR.fields_by_name) == set(fields), name


def _anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page's headings (punctuation dropped, spaces to hyphens)."""
    headings = re.findall(r"^#+ (.+)$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def test_every_link_of_the_reference_leads_to_a_heading() -> None:
    text = render()
    own = _anchors(text)
    protocol = _anchors((ROOT / "docs" / "protocol.md").read_text())
    links = re.findall(r"\]\((protocol\.md)?#([^)]+)\)", text)
    assert links
    broken = [f"{page}#{anchor}" for page, anchor in links
              if anchor not in (protocol if page else own)]  # fmt: skip
    assert not broken
