"""Request dependencies: the visitor's API handle, who they are, and the client's settings."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from ticketing_client.api import Api
from ticketing_client.config import Settings
from ticketing_common.auth import COOKIE_NAME
from ticketing_common.client_address import client_address


async def _api(request: Request) -> Api:
    return Api(
        request.app.state.http,
        request.app.state.settings,
        session=request.cookies.get(COOKIE_NAME),
        visitor_address=client_address(request),
        request_id=request.headers.get("x-request-id"),
    )


ApiDep = Annotated[Api, Depends(_api)]
"""The APIs, called with this visitor's session cookie."""


async def _visitor(request: Request, api: ApiDep) -> dict[str, Any] | None:
    user = await api.current_user()
    # Kept on the request so that error pages, too, show the right header.
    request.state.user = user
    request.state.user_resolved = True
    return user


Visitor = Annotated[dict[str, Any] | None, Depends(_visitor)]
"""The signed-in user as the auth API reports it ({id, email, ...}), or None."""


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


SettingsDep = Annotated[Settings, Depends(_settings)]
