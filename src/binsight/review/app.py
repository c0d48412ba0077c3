"""The review web app: FastAPI with one Jinja2 page and a little plain JavaScript (no front-end build).

Routes: ``GET /`` (the page), ``GET /api/next``, ``POST /api/answer`` ``{"bin", "answer"}``, ``POST /api/undo``,
``GET /api/progress``, ``GET /photo/{bin}`` (only photos of bins in the queue), ``/static/*``. The reviewer's name
comes in the ``X-Reviewer`` header (the page keeps it in the browser's local storage).

With a token, every request must carry it: ``?token=`` once (it is then kept in a cookie), the cookie, or
``Authorization: Bearer``. ``binsight review`` always sets one when it listens on a non-loopback address.
"""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel

from binsight.errors import BinsightError
from binsight.review.store import Conflict, ReviewStore

HERE = Path(__file__).resolve().parent
TOKEN_COOKIE = "binsight_review_token"
_REVIEWER = re.compile(r"^[\w .@+-]{1,64}$")


class AnswerBody(BaseModel):
    bin: int
    answer: str


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(store: ReviewStore, token: str | None = None) -> FastAPI:
    """The review app over ``store``; ``token`` (when set) is required on every request."""
    app = FastAPI(title="binsight review", docs_url=None, redoc_url=None, openapi_url=None)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def require_token(request: Request, call_next):
        if not token:
            return await call_next(request)
        given = request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE) or ""
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not secrets.compare_digest(given.encode(), token.encode()):
            return _error(401, "a token is required: open the URL that `binsight review` printed (…/?token=…)")
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
        return response

    def reviewer_of(request: Request) -> str:
        name = request.headers.get("x-reviewer", "").strip()
        if not _REVIEWER.match(name):
            raise BinsightError("say who you are: a reviewer name of 1-64 letters, digits, spaces or . @ + -")
        return name

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(BinsightError)
    async def _bad(request: Request, exc: BinsightError) -> JSONResponse:
        return _error(400, str(exc))

    def state(reviewer: str, bin_row: dict[str, Any] | None) -> dict[str, Any]:
        if bin_row is not None:
            bin_row = {k: v for k, v in bin_row.items() if k not in ("photo", "location", "sha256")}  # no server paths
            bin_row["photo_url"] = f"/photo/{bin_row['id']}"
        return {"bin": bin_row, "progress": store.progress(reviewer), "reviewer": reviewer}

    @app.get("/", response_class=Response)
    def page(request: Request) -> Response:
        return templates.TemplateResponse(request, "review.html", {"audit": store.audit_dir.name})

    @app.get("/api/next")
    def next_bin(request: Request) -> dict[str, Any]:
        reviewer = reviewer_of(request)
        return state(reviewer, store.next_bin(reviewer))

    @app.post("/api/answer")
    def answer(request: Request, body: AnswerBody) -> dict[str, Any]:
        reviewer = reviewer_of(request)
        store.answer(reviewer, body.bin, body.answer)
        return state(reviewer, store.next_bin(reviewer))

    @app.post("/api/undo")
    def undo(request: Request) -> dict[str, Any]:
        reviewer = reviewer_of(request)
        row = store.undo(reviewer)
        return {**state(reviewer, row or store.next_bin(reviewer)), "undone": row is not None}

    @app.get("/api/progress")
    def progress(request: Request) -> dict[str, int]:
        return store.progress(request.headers.get("x-reviewer"))

    @app.get("/photo/{bin_id}")
    def photo(bin_id: int) -> Response:
        path = store.photo_path(bin_id)
        if path is None or not path.is_file():
            return _error(404, f"no photo for bin {bin_id}")
        return FileResponse(path, media_type="image/png" if path.suffix.lower() == ".png" else "image/jpeg")

    return app
