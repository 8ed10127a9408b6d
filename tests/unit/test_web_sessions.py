"""Browser sessions and form signatures of the service's token issuer: a session token is no
API bearer token (nor the reverse), ends with the user's other sessions, and a CSRF
signature is bound to its purpose and value."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from pgvault.catalog import Catalog
from pgvault.config.settings import load_settings
from pgvault.errors import AuthError
from pgvault.service import users
from pgvault.service.tokens import Tokens

SECRET = "s" * 40


@pytest.fixture
def tokens(tmp_path: Path) -> Iterator[tuple[Tokens, Catalog]]:
    settings = load_settings(home=tmp_path)
    catalog = Catalog.open(settings.catalog_location)
    yield Tokens(settings, catalog, SECRET), catalog
    catalog.engine.dispose()


def test_session_tokens_are_their_own_kind(tokens: tuple[Tokens, Catalog]) -> None:
    issuer, catalog = tokens
    user = users.create(catalog, "alice", "a long password", "operator")
    session = issuer.sign_session(user, timedelta(hours=1))
    assert issuer.session_principal(session).name == "alice"
    with pytest.raises(AuthError, match="not valid here"):
        issuer.principal(session)  # not an API bearer token
    access = issuer.issue(user).access_token
    with pytest.raises(AuthError, match="not valid here"):
        issuer.session_principal(access)
    issuer.logout(user.id, None)
    with pytest.raises(AuthError, match="ended"):
        issuer.session_principal(session)
    expired = issuer.sign_session(users.get(catalog, "alice"), timedelta(seconds=-1))
    with pytest.raises(AuthError, match="expired"):
        issuer.session_principal(expired)


def test_form_signatures_are_bound_to_purpose_and_value(tokens: tuple[Tokens, Catalog]) -> None:
    issuer, _ = tokens
    mark = issuer.sign("csrf", "session-a")
    assert issuer.signed("csrf", "session-a", mark)
    assert not issuer.signed("csrf", "session-b", mark)
    assert not issuer.signed("login", "session-a", mark)
    assert not issuer.signed("csrf", "session-a", mark[:-1] + "0")
