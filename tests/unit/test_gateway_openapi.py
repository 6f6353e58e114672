"""gateway/openapi.py: the committed document is the generated one, valid OpenAPI 3.1, and
what it says about request bodies agrees with the gateway's own rules."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jsonschema
import jsonschema_rs
import pytest
import schemathesis
from pydantic import BaseModel

from contracts import api
from contracts.errors import ErrorCode
from contracts.records import UID_MAX, acceptable_text
from contracts.requests import LIMIT_MAX, RequestProblem
from gateway.domain import requests, usernames, users
from gateway.domain.users import parse_sign_in, parse_sign_up
from gateway.entrypoints.web_routes import assets
from gateway.errors import GatewayError
from gateway.openapi import (
    ERROR_TEXT,
    OPENAPI_FILE,
    PARAMETERS,
    ROUTES,
    TAGS,
    Auth,
    document,
    main,
    render,
)
from platform_common.http import incoming_request_id


def test_the_committed_document_is_the_generated_one() -> None:
    assert OPENAPI_FILE.read_text() == render(), "stale; run: python -m gateway.openapi"
    assert main(["--check"]) == 0


def test_the_document_is_valid_openapi_3_1() -> None:
    schemathesis.openapi.from_dict(document()).validate()


def test_the_route_table_is_consistent() -> None:
    assert set(ERROR_TEXT) == set(ErrorCode)
    ids = [route.operation_id for route in ROUTES]
    assert len(ids) == len(set(ids))
    assert len({(r.path, r.method) for r in ROUTES}) == len(ROUTES)
    for route in ROUTES:
        assert route.tag in TAGS
        assert set(route.params) <= set(PARAMETERS)
        assert set(route.notes) <= set(route.error_codes()), route.operation_id
        path_params = set(re.findall(r"\{(\w+)\}", route.path))
        assert path_params == {p for p in route.params if PARAMETERS[p].where == "path"}


def test_each_error_response_names_its_codes_and_only_those() -> None:
    doc = document()
    for route in ROUTES:
        responses = doc["paths"][route.path][route.method]["responses"]
        for code in route.error_codes():
            response = responses[str(code.status)]
            assert code.value in response["description"]
            schema = response["content"]["application/json"]["schema"]
            assert code.value in schema["properties"]["code"]["enum"]
        if route.limited is not None:
            assert "Retry-After" in responses["429"]["headers"]


def test_security_follows_the_route_table() -> None:
    doc = document()
    assert set(doc["components"]["securitySchemes"]) == {Auth.USER.value, Auth.ADMIN.value}
    admin = {r.path for r in ROUTES if r.auth is Auth.ADMIN}
    assert admin == {"/metrics", "/v1/admin/instances"}


def test_the_models_bounds_are_the_gateways() -> None:
    """contracts/ cannot import the gateway, so the bounds it documents are checked here."""
    assert (api.USERNAME_MIN, api.USERNAME_MAX) == (usernames.USERNAME_MIN, usernames.USERNAME_MAX)
    assert (api.PASSWORD_MIN, api.PASSWORD_MAX) == (users.PASSWORD_MIN, users.PASSWORD_MAX)
    assert api.SIGN_IN_PASSWORD_MAX == users.PASSWORD_SIGN_IN_MAX


def _examples(model: type[BaseModel]) -> list[dict[str, Any]]:
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict)
    examples = extra["examples"]
    assert isinstance(examples, list) and examples
    return [dict(example) for example in examples]


@pytest.mark.parametrize(
    "model", [api.SignUp, api.SignIn, api.NewChat, api.AddMembers, api.NewMessage]
)
def test_body_examples_fit_their_model(model: type[BaseModel]) -> None:
    for example in _examples(model):
        model.model_validate(example)


def test_body_examples_are_accepted_by_the_gateway() -> None:
    """The documented examples pass the gateway's own rules (which raise otherwise)."""
    (sign_up,) = _examples(api.SignUp)
    assert parse_sign_up(sign_up).username.display == sign_up["username"]
    (sign_in,) = _examples(api.SignIn)
    assert parse_sign_in(sign_in).password == sign_in["password"]
    (new_chat,) = _examples(api.NewChat)
    assert requests.new_chat_members(new_chat, caller=new_chat["users"][0]) == new_chat["users"]
    (members,) = _examples(api.AddMembers)
    assert requests.added_members(members) == members["users"]
    (message,) = _examples(api.NewMessage)
    assert requests.message_text(message) == message["txt"]


def _gateway_accepts_text(text: str) -> bool:
    return bool(text.strip()) and acceptable_text(text)


#: Every whitespace character is below U+3100; a few others, astral ones among them.
CHARACTERS = [chr(c) for c in range(0x3100)] + ["\U00010000", "\U0001f600", "\U0010ffff"]


def test_the_text_pattern_is_the_gateway_rule_in_python_and_ecma_regexes() -> None:
    python = re.compile(api.TEXT_WIRE_PATTERN)
    ecma = jsonschema_rs.validator_for({"type": "string", "pattern": api.TEXT_WIRE_PATTERN})
    for char in CHARACTERS:
        for text in (char, f"a{char}", f"{char} "):
            accepted = _gateway_accepts_text(text)
            assert (python.fullmatch(text) is not None) == accepted, repr(text)
            assert ecma.is_valid(text) == accepted, repr(text)


def test_the_empty_cursor_is_documented_as_absent() -> None:
    ecma = jsonschema_rs.validator_for(dict(PARAMETERS["cursor"].schema))
    paging = requests.chat_paging({"cursor": ""})
    assert ecma.is_valid("") and paging.cursor is None
    assert not ecma.is_valid("not a cursor!")


def _web_file(name: str) -> None:
    """The gateway's rule for `/app/{name}`: a file of the web client, else 404."""
    if name not in assets():
        raise GatewayError(ErrorCode.NOT_FOUND, "no such file")


def _query(route: Callable[[dict[str, str]], object], name: str) -> Callable[[str], object]:
    """The gateway's rule for one query parameter: its route's parser, given only it."""
    return lambda raw: route({name: raw})


#: Per parameter of the document: the gateway's own rule for a value (raising
#: GatewayError or RequestProblem when it refuses one), and values it takes, as JSON
#: Schema sees them (a query's number as a number; the value of an array one as an item).
PARAMETER_RULES: dict[str, tuple[Callable[[str], object], tuple[object, ...]]] = {
    "cid": (requests.chat_id, (api.EXAMPLE_ID,)),
    "limit": (_query(requests.chat_paging, "limit"), ("", 1, LIMIT_MAX)),
    "cursor": (_query(requests.chat_paging, "cursor"), ("", "WzEsMiwieCJd", "a" * 200)),
    "before": (_query(requests.message_paging, "before"), ("", api.EXAMPLE_ID)),
    "after": (_query(requests.message_paging, "after"), ("", api.EXAMPLE_ID)),
    "beforeSeq": (_query(requests.message_paging, "beforeSeq"), ("", 0, UID_MAX)),
    "afterSeq": (_query(requests.message_paging, "afterSeq"), ("", 0, UID_MAX)),
    "Idempotency-Key": (requests.idempotency_key, ("k", "~" * requests.IDEMPOTENCY_KEY_MAX)),
    "name": (_web_file, ("main.js", "style.css", "index.html")),
    "id": (lambda raw: requests.user_lookup([raw], []), (1, UID_MAX)),
}
#: Parameters the gateway refuses no value of: a username no account can have finds no
#: one, and an unusable X-Request-ID is replaced with a fresh one.
ANY_VALUE = {"username", "X-Request-ID"}


def _validators(schema: dict[str, Any]) -> list[Callable[[object], bool]]:
    """The schema under Python's `re` (the `jsonschema` library, formats checked) and
    under ECMA-262 regexes (jsonschema_rs)."""
    python = jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    return [python.is_valid, jsonschema_rs.validator_for(schema).is_valid]


def test_no_parameter_takes_a_value_with_a_final_newline() -> None:
    r"""A pattern's `$` also matches before a final "\n" in Python's `re`, so the
    `jsonschema` library took "<id>\n" as a chat id, a cursor or an Idempotency-Key,
    which the gateway refuses: each value it takes must stop being valid with a "\n"
    after it, for the document under both regex dialects and for the gateway."""
    parameters = document()["components"]["parameters"]
    assert set(parameters) == set(PARAMETER_RULES) | ANY_VALUE
    for name, (rule, values) in PARAMETER_RULES.items():
        schema = parameters[name]["schema"]
        as_item = schema.get("type") == "array"
        for value in values:
            rule(str(value))
            newline = f"{value}\n"
            with pytest.raises((GatewayError, RequestProblem)):
                rule(newline)
            for is_valid in _validators(schema):
                assert is_valid([value] if as_item else value), (name, value)
                assert not is_valid([newline] if as_item else newline), (name, newline)


def test_the_parameters_that_take_any_value_are_documented_so() -> None:
    """ANY_VALUE is kept out of the newline test for a reason: the gateway refuses none of
    their values, and the document says any string."""
    parameters = document()["components"]["parameters"]
    for is_valid in _validators(parameters["X-Request-ID"]["schema"]):
        assert is_valid("rid\n") and is_valid("")
    assert incoming_request_id("rid\n") is None  # replaced with a fresh id, not refused
    for is_valid in _validators(parameters["username"]["schema"]):
        assert is_valid(["alice\n"])
    assert requests.user_lookup([], ["alice\n"]) == ([], [])  # finds no one, not refused
