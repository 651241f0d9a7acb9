"""`serve`: SageMaker's serving contract (batch transform, endpoints) around `ltv.scoring.predictions`.

gunicorn listens on 8080 ($SAGEMAKER_BIND_TO_PORT overrides it) and runs a small WSGI app:

    GET  /ping         200 once the model SageMaker unpacked into /opt/ml/model is loaded
    POST /invocations  feature rows, Parquet (`application/x-parquet`, what the ETL writes) or CSV
                       (`text/csv`, with a header) -> the predictions table's columns, as `Accept`
                       asks (default: the request's own type)

The rows are scored exactly as `ltv predict` scores them. The model group comes from the
artifact; the version number from $LTV_MODEL_VERSION (the transform job sets it). Workers:
$SAGEMAKER_MODEL_SERVER_WORKERS (default 1: one worker already uses every core through the
model libraries' threads), timeout $SAGEMAKER_MODEL_SERVER_TIMEOUT seconds (default 900). When
started as root (as SageMaker starts containers) the workers, which parse the requests, run as
$LTV_SERVE_USER, the image's unprivileged user.
"""
from __future__ import annotations

import io
import logging
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from ltv.errors import LtvError
from ltv.models import LTVModel
from ltv.registry import CONTENT_TYPES, CSV, PARQUET  # noqa: F401 - CSV: callers name the formats by serve's
from ltv.scoring import predictions
from pipelines.container import Paths

log = logging.getLogger("ltv.serve")
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def read_frame(body: bytes, content_type: str) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(body)) if content_type == PARQUET else pd.read_csv(io.BytesIO(body))


def write_frame(frame: pd.DataFrame, content_type: str) -> bytes:
    if content_type == PARQUET:
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
    return frame.to_csv(index=False).encode()


class ScoringApp:
    """The WSGI application: one loaded model, scoring whatever rows arrive."""

    def __init__(self, model: LTVModel, version: int | None) -> None:
        self.model, self.version = model, version

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        route = (environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
        if route == ("GET", "/ping"):
            return _reply(start_response, "200 OK", "text/plain", b"ok\n")
        if route == ("POST", "/invocations"):
            return self._invoke(environ, start_response)
        return _reply(start_response, "404 Not Found", "text/plain", b"GET /ping or POST /invocations\n")

    def _invoke(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request_type = _media_type(environ.get("CONTENT_TYPE")) or PARQUET
        accept = _media_type(environ.get("HTTP_ACCEPT"))
        answer_type = request_type if accept in (None, "*/*") else accept
        if request_type not in CONTENT_TYPES:
            return _error(start_response, "415 Unsupported Media Type", f"send {' or '.join(CONTENT_TYPES)}, not {request_type}")
        if answer_type not in CONTENT_TYPES:
            return _error(start_response, "406 Not Acceptable", f"can answer {' or '.join(CONTENT_TYPES)}, not {answer_type}")
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        try:
            features = read_frame(body, request_type)
        except Exception as e:  # noqa: BLE001 - any unreadable body is the client's error
            return _error(start_response, "400 Bad Request", f"the body is not readable as {request_type}: {e}")
        try:
            scored = predictions(self.model, features, self.version)
        except LtvError as e:
            return _error(start_response, "400 Bad Request", str(e))
        log.info("scored %d rows", len(scored))
        return _reply(start_response, "200 OK", answer_type, write_frame(scored, answer_type))


def _media_type(header: str | None) -> str | None:
    return header.split(";")[0].split(",")[0].strip().lower() or None if header else None


def _reply(start_response: StartResponse, status: str, content_type: str, body: bytes) -> list[bytes]:
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


def _error(start_response: StartResponse, status: str, message: str) -> list[bytes]:
    log.warning("%s: %s", status, message)
    return _reply(start_response, status, "text/plain", (message + "\n").encode())


def create_app(model_dir: Path) -> ScoringApp:
    """Load the model (checksums verified) and the version number to stamp on its predictions."""
    version = os.environ.get("LTV_MODEL_VERSION")
    return ScoringApp(LTVModel.load(model_dir), int(version) if version else None)


def server_options() -> dict[str, Any]:
    """gunicorn settings from SageMaker's serving environment variables."""
    options: dict[str, Any] = {
        "bind": f"0.0.0.0:{os.environ.get('SAGEMAKER_BIND_TO_PORT', '8080')}",
        "workers": int(os.environ.get("SAGEMAKER_MODEL_SERVER_WORKERS", "1")),
        "timeout": int(os.environ.get("SAGEMAKER_MODEL_SERVER_TIMEOUT", "900")),
        "accesslog": "-", "errorlog": "-",
    }
    if Path("/dev/shm").is_dir():
        options["worker_tmp_dir"] = "/dev/shm"  # heartbeat files off the container's overlay filesystem
    user = os.environ.get("LTV_SERVE_USER")
    if user and os.geteuid() == 0:
        options |= {"user": user, "group": user}
    return options


def main(argv: list[str] | None = None) -> int:
    from gunicorn.app.base import BaseApplication

    model_dir = Paths.from_env().model

    class Server(BaseApplication):
        """gunicorn's documented custom application: each worker loads the model itself
        (no preloading: the model libraries' thread pools must not cross a fork)."""

        def load_config(self) -> None:
            for key, value in server_options().items():
                self.cfg.set(key, value)

        def load(self) -> ScoringApp:
            return create_app(model_dir)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    Server().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
