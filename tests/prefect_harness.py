"""One Prefect test server per pytest process, shared by every test directory that needs one.

Two ``prefect_test_harness`` contexts in one session would each start a server and swap
``PREFECT_API_URL`` under each other's feet. Each conftest that needs Prefect defines its
fixture as a thin wrapper over :func:`start`, which starts the harness once and closes it
when the process exits::

    from prefect_harness import start as start_prefect_harness, stop as stop_prefect_harness

    @pytest.fixture(scope="session")
    def prefect_api_url() -> Iterator[str]:
        yield start_prefect_harness()
        stop_prefect_harness()  # session end: the first finalizer stops it, others no-op

(``tests/`` is on ``sys.path`` because ``tests/conftest.py`` has no package ``__init__``.)
"""

from __future__ import annotations

from contextlib import ExitStack

_stack: ExitStack | None = None
_api_url: str | None = None


def start() -> str:
    """Start the harness (about 20 s) if it is not running; return its API URL."""
    global _stack, _api_url
    if _stack is None:
        from prefect.settings import PREFECT_API_URL
        from prefect.testing.utilities import prefect_test_harness

        stack = ExitStack()
        stack.enter_context(prefect_test_harness(server_startup_timeout=120))
        _stack = stack
        _api_url = str(PREFECT_API_URL.value())
    assert _api_url is not None
    return _api_url


def stop() -> None:
    global _stack, _api_url
    if _stack is not None:
        stack, _stack, _api_url = _stack, None, None
        stack.close()
