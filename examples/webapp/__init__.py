"""A web app that enqueues tracedjobs jobs from its request handlers (FastAPI and Flask).

- ``examples.webapp.tasks``: the tracedjobs App and its tasks (run them with
  ``tracedjobs worker --app examples.webapp.tasks:app``).
- ``examples.webapp.fastapi_app``: the FastAPI app (``python -m examples.webapp.serve``).
- ``examples.webapp.flask_app``: the same endpoints with Flask.
"""
