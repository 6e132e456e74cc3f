"""``[server] db_pool_size / db_max_overflow / db_prepared_statements`` reach the embedded API's database pool."""

from __future__ import annotations

from pathlib import Path

from localagent.config import load_config
from localagent.embedded.api import EmbeddedApi


def test_the_embedded_api_opens_its_database_with_the_configured_pool(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[agent]\nstate_dir = "{tmp_path / "state"}"\n'
        '[server]\naddress = "127.0.0.1:0"\ndb_pool_size = 3\ndb_max_overflow = 1\ndb_prepared_statements = false\n'
    )
    (tmp_path / "state").mkdir()
    embedded = EmbeddedApi()
    url = embedded.start(load_config([config]))
    try:
        server = embedded.server_at(url)
        assert server is not None
        settings = server.settings
        assert (settings.db_pool_size, settings.db_max_overflow, settings.db_prepared_statements) == (3, 1, False)
        pool = server.app.state.services.database.engine.pool
        assert (pool.size(), pool._max_overflow) == (3, 1)
    finally:
        embedded.stop()
