"""Request dependencies of the web client: its settings, the visitor's API handle and who is signed in."""

from __future__ import annotations

from typing import Annotated, Any

import aiohttp
from fastapi import Depends, Request

from ticketing_client.api import Api
from ticketing_client.config import Settings
from ticketing_common.app import from_app_state
from ticketing_common.auth import COOKIE_NAME
from ticketing_common.client_address import client_address

SettingsDep = Annotated[Settings, Depends(from_app_state("settings", Settings))]
HttpDep = Annotated[aiohttp.ClientSession, Depends(from_app_state("http", aiohttp.ClientSession))]


async def _api(request: Request, http: HttpDep, settings: SettingsDep) -> Api:
    return Api(
        http,
        settings,
        session=request.cookies.get(COOKIE_NAME),
        visitor_address=client_address(request),
        request_id=request.headers.get("x-request-id"),
    )


ApiDep = Annotated[Api, Depends(_api)]
"""The APIs, called with this visitor's session cookie."""


async def current_user(request: Request, api: ApiDep) -> dict[str, Any] | None:
    """Who is signed in, as the auth API reports it; kept on the request so that every page rendered for it, error
    pages included, shows the right header."""
    user = await api.current_user()
    request.state.user = user
    request.state.user_resolved = True
    return user


CurrentUserDep = Annotated[dict[str, Any] | None, Depends(current_user)]
"""The signed-in user ({id, email, ...}), or None."""
