from legato.testing.pytest_plugin import fake_provider

__all__ = ["fake_provider"]
