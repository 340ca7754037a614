"""The OpenAPI 3.1 description of the server API, served at ``GET /api/openapi.json``.

Request and result schemas are generated from the msgspec types the API decodes and
encodes with (:mod:`wshub.api.server_api`), so the description cannot drift from the code;
what msgspec cannot know (which fields a method requires, the reply envelopes) is added here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from wshub import __version__
from wshub.api import server_api as api
from wshub.protocol import messages as m

_REF = "#/components/schemas/{name}"

# method -> (request type, result type, required request fields, summary)
_METHODS: dict[str, tuple[type[Any], type[Any], tuple[str, ...], str]] = {
    "publish": (api.PublishRequest, api.PublishResult, ("channel",), "Publish into a channel"),
    "broadcast": (
        api.BroadcastRequest,
        api.BroadcastResult,
        ("channels",),
        "Publish the same data into several channels",
    ),
    "subscribe": (
        api.SubscribeRequest,
        api.EmptyResult,
        ("user", "channel"),
        "Subscribe a user's connections to a channel",
    ),
    "unsubscribe": (
        api.UnsubscribeRequest,
        api.EmptyResult,
        ("user", "channel"),
        "Unsubscribe a user's connections from a channel",
    ),
    "disconnect": (
        api.DisconnectRequest,
        api.EmptyResult,
        ("user",),
        "Disconnect a user's connections",
    ),
    "refresh": (
        api.RefreshRequest,
        api.EmptyResult,
        ("user",),
        "Set, clear or end the expiry of a user's connections",
    ),
    "presence": (api.ChannelRequest, m.PresenceResult, ("channel",), "Who is in a channel"),
    "presence_stats": (
        api.ChannelRequest,
        m.PresenceStatsResult,
        ("channel",),
        "Client and user counts of a channel",
    ),
    "history": (api.HistoryRequest, m.HistoryResult, ("channel",), "Read a channel's history"),
    "history_remove": (
        api.ChannelRequest,
        api.EmptyResult,
        ("channel",),
        "Remove a channel's history",
    ),
    "channels": (
        api.ChannelsRequest,
        api.ChannelsResult,
        (),
        "Channels with subscribers on this node",
    ),
    "info": (api.InfoRequest, api.InfoResult, (), "Node information"),
}

_DESCRIPTION = """\
The wshub server API, wire-compatible with Centrifugo's HTTP API (the `cent` client works
unchanged). Every method is `POST /api/<method>` with a JSON object body.

Authenticate with `X-API-Key: <key>` or `Authorization: apikey <key>`. Failures of the
request as a whole are HTTP statuses (400 body not JSON or a field of the wrong type, 401
missing or wrong key, 404 unknown method, 413 body too large); everything else answers 200
with `{"result": {...}}` or `{"error": {"code": N, "message": "..."}}`, the codes being the
client protocol's (102 unknown channel, 107 bad request, 108 not available ...).
"""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _envelope(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "oneOf": [
            {
                "type": "object",
                "properties": {"result": result},
                "required": ["result"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"error": _ref("Error")},
                "required": ["error"],
                "additionalProperties": False,
            },
        ]
    }


def _failures() -> dict[str, Any]:
    failure = {"type": "object", "properties": {"error": _ref("Error")}, "required": ["error"]}
    return {
        "400": _json(failure, "The body is not a JSON object of the method's shape."),
        "401": _json(failure, "Missing or wrong API key."),
        "404": _json(failure, "Unknown method, or the API is off."),
        "413": _json(failure, "The body is too large."),
    }


def _operation(
    method: str, request: dict[str, Any], result: dict[str, Any], summary: str
) -> dict[str, Any]:
    return {
        "post": {
            "operationId": method,
            "summary": summary,
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {
                "200": _json(result, "The method's reply (a result or an error)."),
                **_failures(),
            },
        }
    }


@cache
def openapi_document() -> bytes:
    """The OpenAPI document as JSON bytes."""
    types: list[type[Any]] = [api.Error, api.BatchRequest]
    for req, res, _required, _summary in _METHODS.values():
        types += [req, res]
    _, components = msgspec.json.schema_components(types, ref_template=_REF)
    paths: dict[str, Any] = {}
    batch_reply: dict[str, Any] = {"error": _ref("Error")}
    for method, (req, res, required, summary) in _METHODS.items():
        request = dict(components[req.__name__])
        if required:
            request["required"] = sorted(set(request.get("required", [])) | set(required))
        # The same request type can serve several methods with different requirements.
        name = f"{method}_request"
        components[name] = request
        paths[f"/api/{method}"] = _operation(
            method, _ref(name), _envelope(_ref(res.__name__)), summary
        )
        batch_reply[method] = _ref(res.__name__)
    # Batch commands: each is an object with exactly one method key.
    components["BatchCommand"] = {
        "type": "object",
        "properties": {method: _ref(f"{method}_request") for method in _METHODS},
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
    }
    batch_request = dict(components["BatchRequest"])
    batch_request["properties"] = {
        **batch_request["properties"],
        "commands": {"type": "array", "items": _ref("BatchCommand")},
    }
    batch_request["required"] = ["commands"]
    components["BatchRequest"] = batch_request
    components["BatchReply"] = {
        "type": "object",
        "properties": batch_reply,
        "minProperties": 1,
        "maxProperties": 1,
        "additionalProperties": False,
    }
    batch_result = {
        "oneOf": [
            {
                "type": "object",
                "properties": {"replies": {"type": "array", "items": _ref("BatchReply")}},
                "required": ["replies"],
                "additionalProperties": False,
            },
            {
                "type": "object",
                "properties": {"error": _ref("Error")},
                "required": ["error"],
                "additionalProperties": False,
            },
        ]
    }
    paths["/api/batch"] = _operation(
        "batch", _ref("BatchRequest"), batch_result, "Run several commands in order"
    )
    doc = {
        "openapi": "3.1.0",
        "info": {"title": "wshub server API", "version": __version__, "description": _DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "authorizationApikey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "The value is `apikey <key>`.",
                },
            },
        },
        "security": [{"apiKey": []}, {"authorizationApikey": []}],
    }
    return msgspec.json.encode(doc)
