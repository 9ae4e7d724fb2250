"""The catalog's web pages: server-rendered HTML with inline SVG charts, served by the API app."""

from api.web.routes import router

__all__ = ["router"]
