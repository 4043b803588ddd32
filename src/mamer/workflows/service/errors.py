"""Error answers a person can read: `{"detail": "<words>"}`, never an internal object or a traceback.

FastAPI's own 422 for a malformed form lists pydantic errors with the offending input echoed back (for a file
sent where text was expected, the whole UploadFile object). `readable_validation_error` turns each error into
one sentence naming the field. `internal_error` answers anything unexpected with a 500 in the same shape and
writes the traceback to the server log, not to the client. `finite` tells an answer that JSON cannot carry
(NaN or infinity anywhere in it), which the routes answer with an error instead.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

STRING_ERRORS = ("string_type", "str_type", "string_unicode")
BOOL_ERRORS = ("bool_parsing", "bool_type")
PLACES = ("body", "query", "path", "header", "cookie")  # where a field sits; not part of its name


def install_error_handlers(app: FastAPI) -> None:
    """Answer validation errors and unexpected exceptions of `app` in words."""
    app.add_exception_handler(RequestValidationError, readable_validation_error)
    app.add_exception_handler(Exception, internal_error)


async def readable_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with one sentence per invalid field, e.g. "field `text` must be a form field, not a file"."""
    sentences = dict.fromkeys(describe(error) for error in exc.errors())  # ordered, without repeats
    return JSONResponse({"detail": "; ".join(sentences)}, status_code=422)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """500 naming the kind of failure. Starlette raises the exception again after this answer, so the server
    logs its traceback; the client never sees it."""
    detail = f"internal error ({type(exc).__name__}) while answering this request; the server log has details"
    return JSONResponse({"detail": detail}, status_code=500)


def describe(error: dict) -> str:
    """One pydantic/FastAPI validation error as a sentence naming the field; the input is never echoed whole."""
    field = ".".join(str(part) for part in error.get("loc", ()) if part not in PLACES) or "request"
    kind, given = error.get("type", ""), error.get("input")
    if isinstance(given, UploadFile) and kind in STRING_ERRORS:
        return f"field `{field}` must be a form field, not a file"
    if "UploadFile" in str(error.get("msg", "")):
        return f"field `{field}` must be a file upload (a multipart part with a filename), not a text field"
    if kind in BOOL_ERRORS:
        return f"field `{field}` must be true or false, not {_short(given)}"
    if kind == "missing":
        return f"field `{field}` is required"
    return f"field `{field}`: {error.get('msg', 'invalid value')}"


def _short(value: object) -> str:
    """A value quoted for a message, cut to 40 characters (a file is named by its filename)."""
    if isinstance(value, UploadFile):
        return f"a file ({value.filename})"
    text = str(value)
    return repr(text if len(text) <= 40 else text[:40] + "...")


def finite(value: Any) -> bool:
    """False when a number anywhere in an answer (nested dicts and lists) is NaN or infinite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite(v) for v in value)
    return True
