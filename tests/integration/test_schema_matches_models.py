"""The migrations make exactly the tables the models describe, on both databases.

A model changed without its migration (or the reverse) would work in tests
that build tables from the models and fail on a real upgrade.
"""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from graderqueue.store.models import Base


def test_the_migrated_schema_is_the_models_schema(queue):
    with queue.db.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == []
