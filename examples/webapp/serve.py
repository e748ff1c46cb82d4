"""Serve the FastAPI example with the OpenTelemetry SDK set up from the OTEL_* variables.

    OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:4318 python -m examples.webapp.serve
"""

from __future__ import annotations

import argparse
import os

import uvicorn

from tracedjobs import otel_sdk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    args = parser.parse_args()
    sdk = otel_sdk.configure(default_service_name="tracedjobs-webapp")
    try:
        uvicorn.run("examples.webapp.fastapi_app:api", host=args.host, port=args.port)
    finally:
        sdk.shutdown()


if __name__ == "__main__":
    main()
