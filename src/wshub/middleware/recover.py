"""Turn an exception anywhere further in the chain into a plain 500.

The response body is always ``{"error": "internal_error", "message": "internal server
error"}``: never the exception text, never a traceback. The traceback goes to the
``wshub.recover`` logger (event ``middleware_error``), scrubbed of the credentials this
request carried (query values like ``token``, ``Authorization``, cookies) in case the
exception message echoes one.
"""

from __future__ import annotations

import logging
import traceback

from wshub.logs import redact_query, request_secrets, scrub
from wshub.middleware.base import Next, Request, Response, reject

__all__ = ["Recover"]

log = logging.getLogger("wshub.recover")


class Recover:
    """Exception-to-500 middleware; put it first (outermost)."""

    def __call__(self, request: Request, call_next: Next) -> Response | None:
        try:
            return call_next(request)
        except Exception as exc:
            try:
                secrets = request_secrets(request.query_string, request.headers)
                tb = scrub("".join(traceback.format_exception(exc)), secrets)
                log.error(
                    "middleware_error",
                    extra={
                        "event": "middleware_error",
                        "id": request.conn_id,
                        "ip": request.client_ip,
                        "path": request.path,
                        "query": redact_query(request.query_string),
                        "traceback": tb,
                    },
                )
            except Exception:  # logging must never turn a 500 into a crash
                pass
            return reject(500, "internal_error", "internal server error")
