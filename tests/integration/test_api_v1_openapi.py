"""The OpenAPI document says what the code does: same paths and methods, and real
answers validate against its schemas (so neither can change without the other)."""

from __future__ import annotations

import re

import jsonschema
import pytest

from graderqueue.web import api_docs
from tests.integration.test_api_v1_auth import api_token, bearer_jws, get, send

API = "/api/v1"
METHODS = {"get", "post", "put", "patch", "delete"}
# The page about the API (/api/v1/docs and its two files) is not one of its operations.
NOT_THE_API = api_docs.bp.name + "."


def validator_for(doc: dict, schema: dict) -> jsonschema.Draft202012Validator:
    """A validator that resolves the document's own ``#/components/...`` references."""
    return jsonschema.Draft202012Validator({**schema, "components": doc["components"]})


def response_schema(doc: dict, path: str, method: str, status: int, mimetype: str) -> dict:
    return doc["paths"][path][method]["responses"][str(status)]["content"][mimetype]["schema"]


def test_the_document_is_served_without_credentials(queue):
    answer = queue.app.test_client().get(f"{API}/openapi.json")
    assert answer.status_code == 200
    doc = answer.get_json()
    assert doc["openapi"].startswith("3.1")
    assert doc["servers"] == [{"url": API}]


def as_template(rule: str) -> str:
    """Flask's ``<id:job_id>`` as OpenAPI's ``{id}``."""
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: "{" + PATH_NAMES.get(m[1], m[1]) + "}", rule)


PATH_NAMES = {"job_id": "id", "run_id": "id"}


def test_paths_and_methods_are_exactly_the_apps_routes(queue):
    doc = queue.app.test_client().get(f"{API}/openapi.json").get_json()
    routes = {
        (as_template(rule.rule.removeprefix(API)), method.lower())
        for rule in queue.app.url_map.iter_rules()
        if rule.rule.startswith(API + "/") and not rule.endpoint.startswith(NOT_THE_API)
        for method in rule.methods or ()
        if method.lower() in METHODS
    }
    documented = {
        (path, method)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }
    assert routes == documented


@pytest.mark.parametrize("caller", ["operator", "platform"])
def test_real_answers_validate_against_the_document(queue, caller):
    doc = queue.app.test_client().get(f"{API}/openapi.json").get_json()
    platform = queue.platform("p")
    send(queue, platform, "c", 2)
    send(queue, queue.platform("q"), "java", 1)
    token = (
        api_token(queue) if caller == "operator" else bearer_jws(platform, queue.settings.key_name)
    )

    answer = get(queue, f"{API}/queue", token)
    assert answer.status_code == 200
    schema = response_schema(doc, "/queue", "get", 200, "application/json")
    validator_for(doc, schema).validate(answer.get_json())

    refused = get(queue, f"{API}/queue", "gqa_not-a-token")
    assert refused.status_code == 401
    schema = response_schema(doc, "/queue", "get", 401, "application/problem+json")
    validator_for(doc, schema).validate(refused.get_json())


def test_the_schemas_are_strict_enough_to_fail(queue):
    """A validator that accepted anything would make the test above worthless."""
    doc = queue.app.test_client().get(f"{API}/openapi.json").get_json()
    schema = response_schema(doc, "/queue", "get", 200, "application/json")
    with pytest.raises(jsonschema.ValidationError):
        validator_for(doc, schema).validate({"waiting": "many"})
