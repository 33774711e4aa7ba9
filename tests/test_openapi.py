"""The OpenAPI document is valid OpenAPI 3.1, names exactly the app's routes, and tells the truth.

The last test is the contract test: schemathesis generates valid and invalid requests from the
document (its coverage cases, then random ones), sends them to a real node over a socket, and
checks each answer against it with every check schemathesis has.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import orjson
import pytest
import schemathesis
from conftest import NUMBER_PATTERN, SAMPLE_QUERY, AppClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livenode import LiveNode
from schemathesis import GenerationMode
from schemathesis.checks import CHECKS

from snowflake_tracker import __version__
from snowflake_tracker.config import Config
from snowflake_tracker.countries import ASSIGNED
from snowflake_tracker.ids.codec import MAX_KEY_VERSION, render
from snowflake_tracker.ids.generator import SnowflakeGenerator
from snowflake_tracker.ids.layout import MAX_ID, MAX_SEQUENCE, MAX_WORKER_ID
from snowflake_tracker.validation import FIELDS, MISSING_MESSAGE
from snowflake_tracker.web.app import create_app, load_openapi

DOCUMENT: dict[str, Any] = orjson.loads(load_openapi())
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


# Every check schemathesis has: no 5xx; a status, content type, body and headers the document
# lists; a request the document rules out refused, one it allows accepted; 405 with a true Allow
# header for a method it does not list. (The checks of authentication and of resources created
# and deleted find nothing to check here, and pass.)
CONTRACT_CHECKS = CHECKS.get_all()


def documented_operations() -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def routed_operations() -> set[tuple[str, str]]:
    app = create_app(Config(), generator=SnowflakeGenerator(0))
    # The JSON fallbacks (any other method on a path, any other path) are not operations.
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "*"
    }


def walk_schemas(node: object, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every Schema Object in the document, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            where = f"{path}/{key}"
            if key == "schema" and isinstance(value, dict):
                yield where, value
            elif key == "schemas" and isinstance(value, dict) and path == "#/components":
                for name, schema in value.items():
                    yield f"{where}/{name}", schema
            else:
                yield from walk_schemas(value, where)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk_schemas(value, f"{path}/{index}")


def refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def resolve(pointer: str) -> Any:
    assert pointer.startswith("#/"), f"only local references: {pointer}"
    node: Any = DOCUMENT
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def validate(instance: object, schema: dict[str, Any]) -> None:
    """Validate against a schema of the document; its references resolve in the document."""
    rooted = {**schema, "components": DOCUMENT["components"]}
    jsonschema.Draft202012Validator(
        rooted, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(instance)


def component(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = DOCUMENT["components"]["schemas"][name]
    return schema


# --- The document itself -----------------------------------------------------------------------


def test_document_is_valid_openapi_3_1() -> None:
    """The document passes the OpenAPI 3.1 meta-schema, as schemathesis checks it."""
    assert re.fullmatch(r"3\.1\.[0-9]+", DOCUMENT["openapi"])
    schemathesis.openapi.from_dict(DOCUMENT).validate()


def test_every_schema_is_valid_json_schema_2020_12() -> None:
    """Every schema in the document is valid JSON Schema 2020-12, the dialect of OpenAPI 3.1."""
    schemas = list(walk_schemas(DOCUMENT))
    assert len(schemas) > 20
    for where, schema in schemas:
        try:
            jsonschema.Draft202012Validator.check_schema(schema)
        except jsonschema.SchemaError as exc:
            pytest.fail(f"{where}: {exc.message}")


def test_every_reference_resolves() -> None:
    """Every $ref points at something in the document."""
    pointers = set(refs(DOCUMENT))
    assert pointers
    for pointer in pointers:
        resolve(pointer)


def test_operation_ids_are_unique_and_path_parameters_declared() -> None:
    """Operation IDs are unique, and each path template's parameters are declared in the path."""
    ids: list[str] = []
    for path, item in DOCUMENT["paths"].items():
        templated = set(re.findall(r"\{([^}]+)\}", path))
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            ids.append(operation["operationId"])
            declared = {
                parameter["name"]
                for parameter in (
                    resolve(p["$ref"]) if "$ref" in p else p
                    for p in operation.get("parameters", [])
                )
                if parameter["in"] == "path"
            }
            assert declared == templated, f"{method.upper()} {path}"
    assert len(ids) == len(set(ids))


def test_document_lists_exactly_the_routes_of_the_app() -> None:
    """Every route the app serves is documented, and every documented route is served."""
    documented = documented_operations()
    routed = routed_operations()
    assert routed - documented == set(), "routed but not documented"
    assert documented - routed == set(), "documented but not routed"


async def test_app_serves_the_document(app_client: AppClient) -> None:
    """GET /openapi.json answers this document, as JSON, not to be stored."""
    response = await app_client.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    assert orjson.loads(await response.read()) == DOCUMENT


# --- What it says agrees with the code ---------------------------------------------------------


def test_document_version_is_the_package_version() -> None:
    """The document describes this release of the service."""
    assert DOCUMENT["info"]["version"] == __version__


def test_missing_parameters_match_the_contract() -> None:
    """The documented missing-parameter answer has the contract's sentence and field order."""
    missing = component("MissingParameters")["properties"]
    assert missing["error"]["const"] == MISSING_MESSAGE
    assert missing["missing"]["items"]["enum"] == list(FIELDS)
    assert component("Parcel")["required"] == list(FIELDS)
    for path in ("/api/next-tracking-number", "/next-tracking-number"):
        parameters = [resolve(p["$ref"]) for p in DOCUMENT["paths"][path]["get"]["parameters"]]
        assert [p["name"] for p in parameters] == list(FIELDS)
        assert all(p["in"] == "query" and p["required"] for p in parameters)


def test_number_patterns_admit_what_the_codec_renders_and_reads() -> None:
    """Rendered numbers match the documented pattern; typed forms fit the decode parameter."""
    number_pattern = re.compile(component("TrackingNumber")["pattern"])
    assert number_pattern.pattern == NUMBER_PATTERN
    decode_parameter = DOCUMENT["paths"]["/api/tracking-numbers/{tracking_number}"]["get"]
    typed_pattern = re.compile(decode_parameter["parameters"][0]["schema"]["pattern"])
    for snowflake_id in (0, 1, 12_345_678_901_234, MAX_ID):
        for key_version in range(MAX_KEY_VERSION + 1):
            number = render(snowflake_id, "MY", key_version)
            assert number_pattern.match(number)
            assert typed_pattern.match(number)
            assert typed_pattern.match("-".join([number[:4], number[4:10], number[10:]]).lower())
    decoded = component("Decoded")["properties"]
    assert decoded["key_version"]["maximum"] == MAX_KEY_VERSION
    assert decoded["worker_id"]["maximum"] == MAX_WORKER_ID
    assert decoded["sequence"]["maximum"] == MAX_SEQUENCE


def test_country_pattern_admits_every_assigned_code_in_any_case() -> None:
    """Every assigned country code matches the documented pattern, upper or lower case."""
    pattern = re.compile(component("CountryCode")["pattern"])
    for code in ASSIGNED:
        assert pattern.match(code)
        assert pattern.match(code.lower())


def test_batch_limit_is_the_default_configuration() -> None:
    """The documented batch limit is the default batch size."""
    body = DOCUMENT["paths"]["/api/tracking-numbers"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["maxItems"] == Config().max_batch


def test_examples_agree_with_their_schemas() -> None:
    """Each example in the document fits its schema; the parameters' are the DESIGN §1 sample."""
    for name in FIELDS:
        parameter = DOCUMENT["components"]["parameters"][name]
        assert parameter["example"] == SAMPLE_QUERY[name]
        validate(parameter["example"], parameter["schema"])
    for where, schema in walk_schemas(DOCUMENT):
        for example in schema.get("examples", []) + (
            [schema["example"]] if "example" in schema else []
        ):
            try:
                validate(example, schema)
            except jsonschema.ValidationError as exc:
                pytest.fail(f"{where}: {exc.message}")


# --- The contract, over a socket ---------------------------------------------------------------

# Each operation, as schemathesis labels it: a test of its own. The list is static because the
# schemathesis pytest plugin's lazy parametrisation (from_fixture) does not run under pytest 9.
LIVE_OPERATIONS = sorted(f"{method} {path}" for method, path in documented_operations())
EXAMPLES_PER_MODE = 50
LIVE_CONFIG = schemathesis.Config.from_dict(
    {
        # Parameters outside the contract are ignored by design, so a request is invalid only
        # by what it declares; unknown keys are thrown at the app by test_fuzz_http.
        "generation": {"allow-extra-parameters": False},
        "checks": {
            # How the service refuses what the document rules out: 400 for a bad parameter or
            # body, 404 for a decode path with no number in it, 413 for too many parcels.
            "negative_data_rejection": {"expected-statuses": [400, 404, 413]},
            # A schema cannot say all the service checks (an assigned country code, the check
            # character, the configured maximum weight), so a request it allows may still be a
            # 400; any other refusal of one (404, 405, 413, 5xx) is a failure.
            "positive_data_acceptance": {"expected-statuses": ["2xx", 400]},
        },
    }
)


@pytest.fixture(scope="module")
def live_schema(live_node: LiveNode) -> schemathesis.BaseSchema:
    """The document as a live node serves it; requests go to that node."""
    return schemathesis.openapi.from_url(live_node.url("/openapi.json"), config=LIVE_CONFIG)


def send_cases(strategy: st.SearchStrategy[schemathesis.Case[Any]], max_examples: int) -> None:
    """Send the cases ``strategy`` generates and check every answer against the document."""

    @settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def check(case: schemathesis.Case[Any]) -> None:
        case.call_and_validate(checks=CONTRACT_CHECKS)

    check()


def send_coverage_cases(
    schema: schemathesis.BaseSchema, operation: schemathesis.APIOperation[Any, Any, Any, Any]
) -> int:
    """Send the coverage cases of ``operation`` (deterministic: each boundary and each kind of
    wrong value, unlisted methods included) and check every answer; how many were sent."""
    generation = schema.config.generation_for(operation=operation, phase="coverage")
    cases = list(
        schema.iter_coverage_cases(
            operation, generation_modes=list(GenerationMode), generation_config=generation
        )
    )
    for case in cases:
        case.call_and_validate(checks=CONTRACT_CHECKS)
    return len(cases)


def has_input(operation: schemathesis.APIOperation[Any, Any, Any, Any]) -> bool:
    return bool(list(operation.iter_parameters())) or bool(
        list(operation.get_request_payload_content_types())
    )


@pytest.mark.live
@pytest.mark.slow
@pytest.mark.parametrize("label", LIVE_OPERATIONS)
def test_live_node_answers_as_documented(live_schema: schemathesis.BaseSchema, label: str) -> None:
    """A live node answers the document's examples, coverage cases and generated requests as
    it documents."""
    operation = live_schema.find_operation_by_label(label)
    assert operation is not None, label
    assert send_coverage_cases(live_schema, operation) > 0
    for strategy in operation.get_strategies_from_examples():
        send_cases(strategy, max_examples=5)
    send_cases(operation.as_strategy(GenerationMode.POSITIVE), EXAMPLES_PER_MODE)
    if has_input(operation):
        send_cases(operation.as_strategy(GenerationMode.NEGATIVE), EXAMPLES_PER_MODE)
