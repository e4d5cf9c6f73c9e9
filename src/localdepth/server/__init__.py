"""Depth as a local HTTP service: a FastAPI app with dynamic batching, and a web page.

``create_app(estimators, settings)`` builds the app; ``localdepth serve`` runs it with uvicorn.
Needs the ``server`` extra (FastAPI, uvicorn, python-multipart, prometheus-client).
"""

from .app import create_app
from .settings import ServerSettings

__all__ = ["create_app", "ServerSettings"]
