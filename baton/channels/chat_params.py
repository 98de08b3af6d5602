"""The request side of the bundled chat service: the parameters of a Bot API call (query
string, then form or JSON body on top, as Telegram accepts them), the JSON body of the
other routes, and Refused, the error every check raises.

Invariants:
- json_body refuses a body that is not UTF-8, not JSON, or not a JSON object with 400
  (Refused); an empty body is {} only where the body is optional.
- An integer parameter is a JSON number or decimal text within its bounds (by default
  +-MAX_ID, exact in every JSON reader and within SQLite's integers), else Refused(400);
  a bool is never an integer.
- Only the Flask request of the current call is read; nothing is stored.
"""

from __future__ import annotations

import re
from typing import Any

from flask import request

from baton.core import safejson

MAX_ID = 2**53 - 1  # ids stay exact in every JSON reader (and fit SQLite's integers)


class Refused(Exception):
    """A request answered with an error; its body shape depends on the route."""

    def __init__(self, status: int, detail: str, parameters: dict[str, Any] | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.parameters = parameters


def bot_params() -> dict[str, Any]:
    """The query string, then the form or JSON body on top (as Telegram accepts them)."""
    params: dict[str, Any] = request.args.to_dict()
    if request.method != "POST":
        return params
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        params.update(request.form.to_dict())
    else:
        params.update(json_body(required=False))
    return params


def json_body(*, required: bool) -> dict[str, Any]:
    raw = request.get_data(cache=True)
    if not raw.strip() and not required:
        return {}
    try:
        doc = safejson.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise Refused(400, "the body is not UTF-8") from None
    except ValueError:
        raise Refused(400, "the body is not JSON") from None
    if not isinstance(doc, dict):
        raise Refused(400, "the body must be a JSON object")
    return doc


def int_param(
    p: dict[str, Any],
    name: str,
    lo: int = -MAX_ID,
    hi: int = MAX_ID,
    *,
    required: str | None = None,
    bad_str: bool = False,
) -> int | None:
    """An integer parameter (JSON number or decimal text), None when absent. ``bad_str``:
    a text that is not a number names a chat by username, which this chat has not."""
    value = p.get(name)
    if value is None:
        if required:
            raise Refused(400, required)
        return None
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,20}", value.strip()):
        value = int(value)
    elif isinstance(value, str) and bad_str:
        raise Refused(400, "Bad Request: chat not found")
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise Refused(400, f"Bad Request: {name} must be an integer in {lo}..{hi}")
    return value


def object_param(p: dict[str, Any], name: str) -> dict[str, Any]:
    value = p[name]
    if isinstance(value, str):  # form encoding carries objects as JSON text
        try:
            value = safejson.loads(value)
        except ValueError:
            raise Refused(400, f"Bad Request: can't parse {name} JSON object") from None
    if not isinstance(value, dict):
        raise Refused(400, f"Bad Request: {name} must be an object")
    return value
