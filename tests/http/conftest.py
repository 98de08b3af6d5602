"""The Flask app of a node over the fake services facade (tests/http/test_app.py)."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from baton.api import create_app
from baton.core.knobs import resolve_settings
from tests.http.test_app import FakeServices


@pytest.fixture
def services() -> FakeServices:
    return FakeServices()


@pytest.fixture
def client(services: FakeServices) -> FlaskClient:
    return create_app(resolve_settings({}, {}, {}), services).test_client()
