from tests.fixtures.flame_fixtures import full_flame_assets, tiny_flame_assets  # noqa: F401
