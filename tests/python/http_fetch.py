# colony: name = http-fetch
# colony: version = 1.0.0
# colony: description = Test tool: GETs a URL through wasi:http and, when asked, follows redirects itself.
# colony: capability = http.outbound:http://127.0.0.1
# colony: cpu_ms = 2000
"""http-fetch: the Python tool of tests/all/python_tools.rs that uses wasi:http.

invoke({"url": URL, "follow": N}) GETs URL synchronously (outgoing-handler.handle, then
block on the future's pollable, then read the body with blocking-read until the stream is
closed). When the answer is a redirect and N > 0, it requests the `Location` itself (the host
never follows a redirect for a tool), up to N times. It answers every hop:
{"hops": [{"url": U, "status": S, "body": B, "location": L} or {"url": U, "error": E}, ...]}.
A refused request is an `error` hop, not a failed call, so the test sees what the host said.
"""

import json
from urllib.parse import urljoin, urlsplit

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.exports.tool_handler import ToolSpec
from wit_world.imports import outgoing_handler, types
from wit_world.imports.streams import StreamError_Closed

NAME = "http-fetch"

INPUT_SCHEMA = {
    "type": "object",
    "properties": {
        "url": {"type": "string"},
        "follow": {"type": "integer", "minimum": 0, "maximum": 5},
    },
    "required": ["url"],
    "additionalProperties": False,
    # The smoke call at registration: a URL nothing grants, so it touches no network and
    # answers an error hop.
    "examples": [{"url": "http://smoke.invalid/"}],
}


def error_text(e) -> str:
    """An ErrorCode (or anything else) as text, e.g. `ErrorCode_HttpRequestDenied()`."""
    return repr(e)


def get(url: str) -> dict:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return {"url": url, "error": "not an http(s) URL"}
    request = types.OutgoingRequest(types.Fields())
    request.set_method(types.Method_Get())
    request.set_scheme(types.Scheme_Https() if parts.scheme == "https" else types.Scheme_Http())
    request.set_authority(parts.netloc)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    request.set_path_with_query(path)
    try:
        future = outgoing_handler.handle(request, None)
    except Err as e:
        return {"url": url, "error": error_text(e.value)}
    with future:
        with future.subscribe() as pollable:
            pollable.block()
        answer = future.get()
    if answer is None:
        return {"url": url, "error": "the response future was not ready after blocking"}
    if isinstance(answer, Err):
        return {"url": url, "error": "the response was already taken"}
    outcome = answer.value
    if isinstance(outcome, Err):
        return {"url": url, "error": error_text(outcome.value)}
    with outcome.value as response:
        status = response.status()
        with response.headers() as headers:
            location = [v.decode("utf-8", "replace") for v in headers.get("location")]
        body = response.consume()
        chunks = []
        with body.stream() as stream:
            while True:
                try:
                    chunks.append(stream.blocking_read(65536))
                except Err as e:
                    if isinstance(e.value, StreamError_Closed):
                        break
                    return {"url": url, "status": status, "error": "body: " + error_text(e.value)}
        with body:
            pass
    hop = {"url": url, "status": status, "body": b"".join(chunks).decode("utf-8", "replace")}
    if location:
        hop["location"] = location[0]
    return hop


class ToolHandler(exports.ToolHandler):
    def describe(self) -> ToolSpec:
        return ToolSpec(
            name=NAME,
            description="GETs a URL through wasi:http; follows redirects itself when asked.",
            input_schema=json.dumps(INPUT_SCHEMA),
            output_schema=None,
        )

    def invoke(self, args_json: str) -> str:
        args = json.loads(args_json)
        url = args["url"]
        follow = args.get("follow", 0)
        hops = []
        while True:
            hop = get(url)
            hops.append(hop)
            if follow <= 0 or "location" not in hop or hop.get("status") not in (301, 302, 303, 307, 308):
                break
            follow -= 1
            url = urljoin(url, hop["location"])
        return json.dumps({"hops": hops})
