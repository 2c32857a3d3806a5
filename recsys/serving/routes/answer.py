"""The response of every list route: the list's JSON body, and its fallback counted."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from recsys.serving.index import ServingIndex
from recsys.serving.service import Answer, list_body

__all__ = ["list_response"]


def list_response(request: Request, index: ServingIndex, answer: Answer) -> Response:
    result, arm = answer
    if result.fallback:
        route = request.scope.get("route")
        request.app.state.metrics["fallbacks"].labels(
            route=getattr(route, "path", "?"), fallback=result.fallback).inc()
    return Response(list_body(index, result, request.state.request_id, arm),
                    media_type="application/json")
