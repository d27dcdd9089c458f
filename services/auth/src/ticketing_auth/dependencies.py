"""Request dependencies of the auth routes: its settings, its password hasher, its session keys, the sign-in
limits and the client address they count (the database, ``DatabaseDep``, comes from ``ticketing_common.app``)."""

from typing import Annotated

from fastapi import Depends, Request

from ticketing_auth.config import Settings
from ticketing_auth.domain import SigninLimit
from ticketing_auth.passwords import Passwords
from ticketing_common.app import from_app_state
from ticketing_common.auth import SessionVerifier
from ticketing_common.client_address import client_address
from ticketing_common.keys import KeyRingFile
from ticketing_common.revocations import Revocations

SettingsDep = Annotated[Settings, Depends(from_app_state("settings", Settings))]
PasswordsDep = Annotated[Passwords, Depends(from_app_state("passwords", Passwords))]
KeyRingDep = Annotated[KeyRingFile, Depends(from_app_state("key_ring", KeyRingFile))]


async def _revocations(request: Request) -> Revocations:
    verifier: SessionVerifier = request.app.state.sessions
    return verifier.revocations


RevocationsDep = Annotated[Revocations, Depends(_revocations)]


async def _signin_limit(settings: SettingsDep) -> SigninLimit:
    return SigninLimit.from_settings(settings)


async def _client_address(request: Request) -> str:
    return client_address(request)


SigninLimitDep = Annotated[SigninLimit, Depends(_signin_limit)]
ClientAddressDep = Annotated[str, Depends(_client_address)]
