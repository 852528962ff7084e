"""The one error a request handler raises for bad input, and the JSON body it becomes.

Bodies follow OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, so OpenAI clients
(and our own `openai` backend) show the message; `message` starts with where the problem is.
"""

from __future__ import annotations

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    408: "timeout_error",
    405: "invalid_request_error",
    413: "request_too_large",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_overloaded",
}


class ApiError(Exception):
    """A request the server will not serve: HTTP `status`, what is wrong, and `where` in the request."""

    def __init__(self, status: int, message: str, where: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.where = where
        self.code = code

    def body(self) -> dict:
        return error_body(self.status, self.message, self.where, self.code)


def error_body(status: int, message: str, where: str | None = None, code: str | None = None) -> dict:
    """The JSON error body.

    >>> error_body(400, "not valid base64", "observation")["error"]["message"]
    'observation: not valid base64'
    """
    text = f"{where}: {message}" if where else message
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"message": text, "type": kind, "param": where, "code": code}}
