from tests.fixtures.flame_fixtures import tiny_flame_assets  # noqa: F401
