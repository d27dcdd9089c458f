"""Request dependencies of the auth routes: the service's own settings, its password hasher, the sign-in limits
and the client's address they count."""

from typing import Annotated

from fastapi import Depends, Request

from ticketing_auth.config import Settings
from ticketing_auth.passwords import Passwords
from ticketing_auth.service import SigninLimit
from ticketing_common.client_address import client_address


async def _settings(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


async def _passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


async def _signin_limit(settings: Annotated[Settings, Depends(_settings)]) -> SigninLimit:
    return SigninLimit.from_settings(settings)


async def _client_address(request: Request) -> str:
    return client_address(request)


AuthSettingsDep = Annotated[Settings, Depends(_settings)]
PasswordsDep = Annotated[Passwords, Depends(_passwords)]
SigninLimitDep = Annotated[SigninLimit, Depends(_signin_limit)]
ClientAddressDep = Annotated[str, Depends(_client_address)]
