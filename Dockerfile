# Image for the worker and the example web app of docker-compose.yml.
FROM python:3.12-slim
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PYTHONPATH=/app
COPY pyproject.toml README.md* ./
COPY tracedjobs ./tracedjobs
RUN pip install --no-cache-dir '.[examples]'
COPY examples ./examples
