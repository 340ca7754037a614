"""Property-based testing of the server API against its own OpenAPI description with
schemathesis (its CLI, against a real gateway): valid and invalid requests to every method
never get a server error, and every response matches the document (status, content type,
body schema)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from conftest import GatewayFactory, http_url, make_config, open_namespace

API_KEY = "schemathesis-api-key-0123456789"
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def _schemathesis() -> str:
    exe = Path(sys.executable).with_name("schemathesis")
    return str(exe) if exe.exists() else "schemathesis"


async def test_api_conforms_to_its_openapi_document(
    gateway_factory: GatewayFactory, tmp_path: Path
) -> None:
    cfg = make_config(
        api_key=API_KEY,
        namespaces=[
            open_namespace(""),
            open_namespace("chat", presence=True, history_size=20, history_ttl=60),
        ],
    )
    gw = await gateway_factory(cfg)
    proc = await asyncio.create_subprocess_exec(
        _schemathesis(),
        "run",
        http_url(gw, "/api/openapi.json"),
        "--header",
        f"X-API-Key: {API_KEY}",
        "--checks",
        CHECKS,
        "--phases",
        "examples,fuzzing",
        "--mode",
        "all",  # positive and negative data
        "--max-examples",
        "25",
        "--seed",
        "20240601",
        "--workers",
        "4",
        "--request-timeout",
        "5",
        cwd=tmp_path,  # keeps its .hypothesis directory out of the repository
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "120"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 100)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "13 selected / 13 total" in text, text
    assert "No issues found" in text, text
